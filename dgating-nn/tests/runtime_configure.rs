//! `runtime::configure` fills in the process settings the user left unset and keeps the ones
//! they chose. One test in its own binary: it changes the environment, which must not race
//! with other threads reading it.

#[test]
fn configure_sets_missing_variables_and_keeps_the_users() {
    // SAFETY: the only test of this binary; no other thread reads the environment.
    unsafe {
        std::env::remove_var("RAYON_NUM_THREADS");
        std::env::set_var("CANDLE_NUM_THREADS", "77");
        dgating_nn::runtime::configure();
    }
    let threads: usize = std::env::var("RAYON_NUM_THREADS").expect("set").parse().expect("a number");
    assert!(threads >= 1);
    assert_eq!(std::env::var("CANDLE_NUM_THREADS").as_deref(), Ok("77"), "the user's value stays");
    // SAFETY: as above.
    unsafe {
        std::env::remove_var("CANDLE_NUM_THREADS");
        dgating_nn::runtime::configure();
    }
    assert_eq!(std::env::var("CANDLE_NUM_THREADS").as_deref(), Ok("1"));
    assert_eq!(std::env::var("RAYON_NUM_THREADS").expect("set").parse::<usize>().expect("a number"), threads);
}
