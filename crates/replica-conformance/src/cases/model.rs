use crate::{CaseError, CaseResult, Fixture};

/// Random sequences per run; `REPLICA_MODEL_CASES` raises it for long runs.
fn cases() -> u32 {
    std::env::var("REPLICA_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

pub(crate) async fn random_operations_match_the_reference_model(f: Fixture) -> CaseResult {
    crate::model::check_against_model(f.client.clone(), cases())
        .await
        .map_err(CaseError::Fail)
}
