//! API machinery shared by the API server and its clients inside rind.
