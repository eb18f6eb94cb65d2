//! The suite must fail on broken backends, and pass on a sound one.

use std::sync::Arc;

use replica_conformance::mutants::Mutant;
use replica_conformance::{all_cases, run_case, run_suite, Fixture, Outcome};
use replica_memory::MemoryClient;

#[test]
fn the_suite_has_at_least_sixty_cases_with_unique_names() {
    let cases = all_cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "duplicate case names");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutant_is_caught_by_its_named_case() {
    for mutant in Mutant::ALL {
        let factory = move || async move {
            let client = mutant.wrap(Arc::new(MemoryClient::default()));
            Ok::<_, String>(Fixture::new(client))
        };
        let case = all_cases()
            .into_iter()
            .find(|c| c.name == mutant.caught_by())
            .unwrap_or_else(|| panic!("{mutant:?} names a case that does not exist"));
        let report = run_case(&case, &factory).await;
        assert_eq!(
            report.outcome,
            Outcome::Fail,
            "{mutant:?} was not caught by {}",
            case.name
        );
        assert!(
            report.message.contains(mutant.failure_says()),
            "{mutant:?} made {} fail, but not for its rule (expected {:?} in): {}",
            case.name,
            mutant.failure_says(),
            report.message
        );
        // The same case passes on the sound backend: the failure is the mutant's.
        let sound = || async { Ok::<_, String>(Fixture::new(MemoryClient::default())) };
        assert_eq!(
            run_case(&case, &sound).await.outcome,
            Outcome::Pass,
            "{}",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_check_catches_and_shrinks_a_mutant() {
    let factory = || async {
        let client = Mutant::PartialWriteVisible.wrap(Arc::new(MemoryClient::default()));
        Ok::<_, String>(Fixture::new(client))
    };
    let report = run_suite("mutant", &factory, Some("reference_model")).await;
    assert_eq!(report.cases.len(), 1);
    let case = &report.cases[0];
    assert_eq!(case.outcome, Outcome::Fail);
    assert!(
        case.message.contains("minimal failing sequence"),
        "{}",
        case.message
    );
    assert!(
        case.message.contains("FailedWrite"),
        "shrunk to the failed write: {}",
        case.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_mutant_is_caught_by_its_named_case() {
    use replica_conformance::mutants::StoreMutant;
    use replica_conformance::FnPlanter;
    use replica_core::{KeyStore, StoreClient};
    use replica_memory::MemoryStore;
    for mutant in StoreMutant::ALL {
        let factory = move || async move {
            let store = MemoryStore::new();
            let raw = store.clone();
            let client = StoreClient::new(mutant.wrap(store));
            Ok::<_, String>(Fixture::new(client).with_planter(FnPlanter(
                move |path: String, data: bytes::Bytes| {
                    let raw = raw.clone();
                    async move {
                        raw.put(&path, replica_core::bytes_stream(data))
                            .await
                            .map(|_| ())
                    }
                },
            )))
        };
        let case = all_cases()
            .into_iter()
            .find(|c| c.name == mutant.caught_by())
            .unwrap_or_else(|| panic!("{mutant:?} names a case that does not exist"));
        let report = run_case(&case, &factory).await;
        assert_eq!(
            report.outcome,
            Outcome::Fail,
            "{mutant:?} was not caught by {}",
            case.name
        );
        assert!(
            report.message.contains(mutant.failure_says()),
            "{mutant:?} made {} fail, but not for its rule (expected {:?} in): {}",
            case.name,
            mutant.failure_says(),
            report.message
        );
        let sound = || async {
            let store = MemoryStore::new();
            let raw = store.clone();
            Ok::<_, String>(
                Fixture::new(StoreClient::new(store)).with_planter(FnPlanter(
                    move |path: String, data: bytes::Bytes| {
                        let raw = raw.clone();
                        async move {
                            raw.put(&path, replica_core::bytes_stream(data))
                                .await
                                .map(|_| ())
                        }
                    },
                )),
            )
        };
        assert_eq!(
            run_case(&case, &sound).await.outcome,
            Outcome::Pass,
            "{}",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_run_on_a_store_with_broken_listings_ends_in_seconds() {
    use replica_conformance::mutants::StoreMutant;
    use replica_core::StoreClient;
    use replica_memory::MemoryStore;
    // Listings that name objects by their whole key: almost nothing is
    // found, and every case that waits for a listed object must give up on
    // its own within seconds.
    let factory = || async {
        let store = StoreMutant::ListsWholeKeys.wrap(MemoryStore::new());
        Ok::<_, String>(Fixture::new(StoreClient::new(store)))
    };
    let started = std::time::Instant::now();
    let report = run_suite("broken listings", &factory, None).await;
    let took = started.elapsed();
    let failed = report.failures().count();
    assert!(
        failed >= 20,
        "only {failed} cases failed on broken listings"
    );
    assert!(
        took < std::time::Duration::from_secs(60),
        "the run took {took:?}: some case waits for what never comes"
    );
    let follow = report
        .cases
        .iter()
        .find(|c| c.case == "cursor_follow_wakes_on_append")
        .expect("the case ran");
    assert!(follow.message.contains("waited"), "{}", follow.message);
}
