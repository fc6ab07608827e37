//! (being written)
use std::sync::Arc;
pub async fn run(_ctx: Arc<super::Context>) {
    std::future::pending::<()>().await
}
