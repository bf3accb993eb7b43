use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env(
            pagesight::env_vars::LOG,
        ))
        .with_writer(std::io::stderr)
        .init();
    let cli = pagesight::cli::Cli::parse();
    if let Err(e) = pagesight::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
