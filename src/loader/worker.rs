//! Render worker process (`pagesight __render-worker`), driven over stdin/stdout.

pub fn worker_main() -> anyhow::Result<()> {
    anyhow::bail!("render worker not implemented yet")
}
