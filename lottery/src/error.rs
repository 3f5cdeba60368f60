//! `DrawError`: every way the draw engine can refuse, for callers that want one type.

use crate::check::CheckFailure;
use crate::child::ChildError;
use crate::choice::ChoiceError;
use crate::ids::IdError;
use crate::import::ImportErrors;
use crate::key_file::KeyFileError;
use crate::receipt::ReceiptError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrawError {
    /// Inputs or a transcript fail a check of spec section 8.
    #[error(transparent)]
    Check(#[from] CheckFailure),
    #[error(transparent)]
    Import(#[from] ImportErrors),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    #[error("private application file: {0}")]
    PrivateFile(String),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error(transparent)]
    Choice(#[from] ChoiceError),
}
