//! The restart policy against simulated memory curves: a week per curve,
//! the default policy and `threshold = 100%, predict = off`, and the
//! horizons around the default. Prints the Markdown tables of the README and
//! BENCHMARKS.md: `cargo bench --bench predict`.

use dynoguard::decide::policy::Policy;
use dynoguard::sim::curves::{self, Column, WEEK};
use jiff::SignedDuration;

fn main() {
    let started = std::time::Instant::now();
    println!("## default vs predict off (a simulated week per curve)\n");
    println!("{}", curves::table(&curves::default_columns(), WEEK, 1));
    let horizon = |mins: i64| Column {
        name: format!("predict = {mins}m"),
        policy: Policy {
            predict: Some(SignedDuration::from_mins(mins)),
            ..Policy::default()
        },
    };
    println!("## the horizon (predict) around the default\n");
    println!(
        "{}",
        curves::table(&[horizon(1), horizon(3), horizon(5)], WEEK, 1)
    );
    let no_guard = Column {
        name: "floor 50 %".into(),
        policy: Policy {
            predict_floor: 50.0,
            ..Policy::default()
        },
    };
    println!("## a lower floor\n");
    println!("{}", curves::table(&[no_guard], WEEK, 1));
    eprintln!("({:.1} s)", started.elapsed().as_secs_f64());
}
