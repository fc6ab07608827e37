//! (being written)
use std::sync::Arc;
pub async fn run(_ctx: Arc<crate::controllers::Context>) {
    std::future::pending::<()>().await
}
