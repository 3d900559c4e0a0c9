use clap::Parser;

fn main() {
    let cli = match sidecar_host::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A bad setting reads like every other error of the binary:
            // `svidgate: invalid --flag (ENV) "value": reason`, exit code 2.
            if let Some(msg) = sidecar_host::runtime::setting_error(&e) {
                eprintln!("svidgate: {msg}");
                std::process::exit(2);
            }
            e.exit()
        }
    };
    match sidecar_host::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("svidgate: {e:#}");
            std::process::exit(2);
        }
    }
}
