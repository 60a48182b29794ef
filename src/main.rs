//! The `qsearch` command line. [`cli`] parses the flags into the library's run configs and runs
//! the command; this file decides the exit code (see [`qsearch::exit`]).

mod cli;

use qsearch::exit;

fn main() {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = error.exit_code();
            // --help and --version print to standard output and succeed.
            let _ = error.print();
            if error.use_stderr() {
                eprintln!("{}", exit::line(code));
            }
            std::process::exit(code);
        }
    };
    qsearch::progress::set_quiet(cli.quiet);
    if let Err(error) = cli::run(cli) {
        eprintln!("error: {error:#}");
        eprintln!("{}", exit::line(exit::ERROR));
        std::process::exit(exit::ERROR);
    }
}
