//! A parent's choices: 1 to 8 kindergartens in order of preference, each with the child's
//! priority class there.

use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::KindergartenCode;
use crate::serde_util::{MAX_SAFE_EXCLUSIVE, deserialize_safe_u64};

/// The most choices an application may list.
pub const MAX_CHOICES: usize = 8;

/// Why a list of choices was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error("an application has 1 to {MAX_CHOICES} choices, found {0}")]
    Count(usize),
    #[error("kindergarten {0} is chosen twice")]
    Repeated(KindergartenCode),
    #[error("priority class must be an integer from 1 to 2^53-1, found {0}")]
    Class(u64),
}

/// One choice: a kindergarten and the child's priority class there (1 is highest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub kg: KindergartenCode,
    #[serde(deserialize_with = "deserialize_class")]
    pub class: u64,
}

fn deserialize_class<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let class = deserialize_safe_u64(deserializer)?;
    if class == 0 {
        return Err(serde::de::Error::custom(ChoiceError::Class(0)));
    }
    Ok(class)
}

/// 1 to 8 choices, no kindergarten twice, in the parent's order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Choices(Vec<Choice>);

impl Choices {
    pub fn new(choices: Vec<Choice>) -> Result<Choices, ChoiceError> {
        if choices.is_empty() || choices.len() > MAX_CHOICES {
            return Err(ChoiceError::Count(choices.len()));
        }
        for (i, choice) in choices.iter().enumerate() {
            if choice.class == 0 || choice.class >= MAX_SAFE_EXCLUSIVE {
                return Err(ChoiceError::Class(choice.class));
            }
            if choices[..i].iter().any(|earlier| earlier.kg == choice.kg) {
                return Err(ChoiceError::Repeated(choice.kg));
            }
        }
        Ok(Choices(choices))
    }

    pub fn as_slice(&self) -> &[Choice] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Choices::new(Vec::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(kg: &str, class: u64) -> Choice {
        Choice {
            kg: KindergartenCode::parse(kg).unwrap(),
            class,
        }
    }

    #[test]
    fn choices_are_checked() {
        assert!(Choices::new(vec![choice("A", 1), choice("B", 2)]).is_ok());
        assert_eq!(Choices::new(vec![]), Err(ChoiceError::Count(0)));
        assert!(matches!(
            Choices::new(vec![choice("A", 1), choice("A", 2)]),
            Err(ChoiceError::Repeated(_))
        ));
        assert_eq!(
            Choices::new(vec![choice("A", 0)]),
            Err(ChoiceError::Class(0))
        );
        let nine = (0..9).map(|i| choice(&format!("K{i}"), 1)).collect();
        assert_eq!(Choices::new(nine), Err(ChoiceError::Count(9)));
    }

    #[test]
    fn class_zero_is_refused_when_parsing() {
        assert!(serde_json::from_str::<Choices>(r#"[{"kg":"A","class":0}]"#).is_err());
        assert!(serde_json::from_str::<Choices>(r#"[{"kg":"A","class":1.0}]"#).is_err());
        assert!(serde_json::from_str::<Choices>(r#"[{"kg":"A","class":1}]"#).is_ok());
    }
}
