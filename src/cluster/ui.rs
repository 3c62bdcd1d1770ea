//! Step-by-step progress as kind prints it: a spinner per step on a terminal, then ✓ or ✗
//! and the time it took; plain lines otherwise.

pub struct Ui {
    pub quiet: bool,
    pub verbosity: u8,
}

impl Ui {
    pub fn new(quiet: bool, verbosity: u8) -> Self {
        Ui { quiet, verbosity }
    }
}
