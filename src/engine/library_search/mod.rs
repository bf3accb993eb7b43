//! One query over several indexes (the app's library, `pagesight search --index A --index B`):
//! each index answers on its own (`gather`), and the answers become one ranked list per model
//! (`merge`). Both front ends use it, so a query ranks the same in the GUI and on the command line.

pub mod gather;
pub mod merge;
