//! The cases, one module per group. The list below is the suite: the
//! registry ([`all_cases`](crate::all_cases)) and the test functions of
//! [`conformance_tests!`](crate::conformance_tests) are both made from it.

pub(crate) mod concurrency;
pub(crate) mod cursor;
pub(crate) mod generations;
pub(crate) mod junk;
pub(crate) mod ltx;
pub(crate) mod model;
pub(crate) mod ops;
pub(crate) mod snapshots;
pub(crate) mod streaming;
pub(crate) mod wal;

/// Expands `__expand_cases!` with the list of every case.
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_case {
    ($($mode:tt)*) => {
        $crate::__expand_cases! {
            [$($mode)*]
            generations::generations_of_an_empty_store_are_empty,
            generations::generations_are_listed_ascending,
            generations::a_generation_with_only_wal_is_listed,
            generations::delete_generation_removes_every_object,
            generations::delete_generation_leaves_other_generations_alone,
            generations::delete_of_a_missing_generation_is_ok,
            generations::a_generation_emptied_object_by_object_is_not_listed,
            generations::more_than_a_thousand_generations_list_complete_and_sorted,
            generations::deleting_a_generation_of_more_than_a_thousand_objects_leaves_nothing,
            snapshots::snapshots_of_a_missing_generation_are_empty,
            snapshots::snapshots_are_sorted_by_index,
            snapshots::write_snapshot_returns_exact_info,
            snapshots::listed_snapshot_has_exact_size_and_time,
            snapshots::snapshot_round_trip_is_byte_exact,
            snapshots::empty_snapshot_round_trips,
            snapshots::snapshot_overwrite_replaces_content,
            snapshots::snapshot_reader_of_a_missing_index_is_not_found,
            snapshots::snapshot_reader_of_a_missing_generation_is_not_found,
            snapshots::delete_snapshot_removes_only_that_snapshot,
            snapshots::delete_of_a_missing_snapshot_is_ok,
            snapshots::snapshot_index_above_the_layout_maximum_is_invalid,
            snapshots::snapshot_at_the_largest_index_works,
            snapshots::failed_snapshot_write_stores_nothing,
            snapshots::failed_snapshot_overwrite_keeps_the_old_content,
            snapshots::write_error_is_the_input_error_not_a_panic,
            snapshots::snapshots_of_one_generation_are_not_listed_in_another,
            wal::wal_of_a_missing_generation_is_empty,
            wal::wal_segments_are_sorted_by_index_then_offset,
            wal::more_than_a_thousand_segments_list_complete_and_sorted,
            wal::more_than_a_thousand_wal_indexes_list_complete_and_restore_across,
            wal::wal_segment_round_trip_is_byte_exact,
            wal::write_wal_segment_returns_exact_info,
            wal::wal_segment_overwrite_replaces_content,
            wal::wal_segment_reader_of_a_missing_segment_is_not_found,
            wal::delete_wal_segments_removes_only_those_listed,
            wal::delete_of_missing_wal_segments_is_ok,
            wal::wal_position_above_the_layout_maximum_is_invalid,
            wal::wal_segment_at_the_largest_position_works,
            wal::failed_wal_segment_write_stores_nothing,
            wal::snapshots_and_wal_segments_are_listed_apart,
            wal::generations_do_not_share_segments,
            wal::deleting_more_than_a_thousand_segments_deletes_them_all,
            wal::a_missing_segment_is_not_found_from_the_call_itself,
            wal::an_empty_wal_segment_round_trips,
            wal::the_write_reply_time_is_the_listed_time,
            junk::junk_generation_names_are_skipped,
            junk::junk_snapshot_names_are_skipped,
            junk::junk_wal_index_names_are_skipped,
            junk::junk_wal_segment_names_are_skipped,
            junk::a_file_where_a_directory_belongs_is_skipped,
            junk::a_directory_where_a_file_belongs_is_skipped,
            junk::stale_temporary_files_are_never_listed,
            junk::canonical_objects_planted_by_raw_key_are_listed_and_read,
            streaming::a_64_mib_snapshot_streams_back_byte_exact,
            streaming::a_large_wal_segment_streams_back_byte_exact,
            concurrency::sixteen_concurrent_writers_lose_nothing,
            concurrency::concurrent_overwrites_leave_one_whole_version,
            concurrency::listings_during_writes_are_sorted_and_whole,
            concurrency::concurrent_deletes_and_writes_of_other_objects_do_not_interfere,
            concurrency::thirty_two_tasks_mixing_operations_match_the_acknowledged_log,
            cursor::cursor_rejects_another_generation,
            cursor::cursor_rejects_an_index_below_the_max_pending,
            cursor::cursor_rejects_an_index_skipping_past_the_max_pending,
            cursor::cursor_reads_the_next_index_appended_while_pending,
            cursor::cursor_accepts_the_max_pending_index_without_duplicating,
            cursor::cursor_rejects_an_index_below_the_last_segment,
            cursor::cursor_rejects_an_index_skipping_past_the_last_segment,
            cursor::cursor_rejects_an_offset_before_the_last,
            cursor::cursor_rejects_a_duplicate_offset,
            cursor::cursor_buffers_a_later_offset_in_order,
            cursor::cursor_reads_the_next_index_appended_after_the_last,
            cursor::cursor_of_an_empty_generation_yields_the_first_append,
            cursor::cursor_rejected_append_changes_nothing,
            cursor::cursor_reads_each_index_lazily,
            cursor::cursor_follow_wakes_on_append,
            ops::latest_generation_is_the_one_written_last,
            ops::max_index_and_time_bounds_cover_snapshots_and_wal,
            ops::snapshot_for_index_is_the_newest_at_or_below,
            ops::restore_to_the_end_hands_over_snapshot_then_each_wal_file,
            ops::restore_to_an_index_stops_there,
            ops::restore_with_an_offset_gap_fails_before_handing_anything_over,
            ops::restore_with_a_missing_middle_segment_names_the_position,
            ops::restore_with_a_missing_index_fails,
            ops::restore_without_a_snapshot_is_not_found,
            model::random_operations_match_the_reference_model,
        }
    };
}

/// Expands `__expand_cases!` with the LTX layout's cases.
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_ltx_case {
    ($($mode:tt)*) => {
        $crate::__expand_cases! {
            [$($mode)*]
            ltx::ltx_levels_list_by_txid,
            ltx::ltx_levels_present_are_found_in_either_key_shape,
            ltx::ltx_seek_starts_at_the_txid,
            ltx::ltx_missing_file_is_not_found_from_the_call,
            ltx::ltx_ranged_reads_at_and_past_the_end,
            ltx::ltx_overwrite_replaces_content,
            ltx::ltx_failed_write_stores_nothing,
            ltx::more_than_a_thousand_ltx_files_in_a_level_list_complete,
            ltx::junk_ltx_names_are_skipped,
            ltx::ltx_file_times_are_kept,
            ltx::ltx_delete_removes_only_the_files_named,
        }
    };
}
