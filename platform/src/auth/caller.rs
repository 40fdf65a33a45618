//! Who is calling, as the services see it: a [`Caller`] built from a verified token,
//! and the ownership rules every public service applies to it. Pure: no I/O, so the
//! rules are unit-tested here and read the same in every service.

use std::collections::BTreeSet;

use crate::values::ExternalId;

/// The verified end user behind a call, put into the request extensions by the
/// authentication layer. Handlers read it; they never trust an id in the request body
/// alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A customer: the token subject is the customer id.
    Customer {
        /// The customer id (the token's `sub`).
        id: ExternalId,
    },
    /// A talent manager (`roles` contains `manager`): acts only on the bookings of the
    /// talents listed in the token's `talents` claim.
    Manager {
        /// The manager id (the token's `sub`).
        id: ExternalId,
        /// Talent ids this manager manages.
        talents: BTreeSet<String>,
    },
}

/// A rule said no. Services answer PERMISSION_DENIED with the message, which never
/// depends on whether the resource exists (AIP-211).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Caller {
    /// The token subject, whatever the role.
    pub fn subject(&self) -> &ExternalId {
        match self {
            Caller::Customer { id } | Caller::Manager { id, .. } => id,
        }
    }

    /// The customer a request may act for: `requested` must be empty ("mine") or the
    /// caller's own id. Manager tokens do not act as customers.
    ///
    /// # Errors
    ///
    /// [`Denied`] for a manager token or another customer's id.
    pub fn customer_for(&self, requested: &str) -> Result<ExternalId, Denied> {
        match self {
            Caller::Customer { id } if requested.is_empty() || requested == id.as_ref() => {
                Ok(id.clone())
            }
            Caller::Customer { .. } => Err(Denied(
                "customer_id must be the caller's own id (or empty)".into(),
            )),
            Caller::Manager { .. } => Err(Denied(
                "this call needs a customer token, not a manager token".into(),
            )),
        }
    }

    /// Whether the caller is the customer who owns a resource.
    pub fn owns(&self, owner: &str) -> bool {
        matches!(self, Caller::Customer { id } if id.as_ref() == owner)
    }

    /// Whether the caller manages `talent_id`.
    pub fn manages(&self, talent_id: &str) -> bool {
        matches!(self, Caller::Manager { talents, .. } if talents.contains(talent_id))
    }

    /// The manager id, for manager-only calls.
    ///
    /// # Errors
    ///
    /// [`Denied`] for a customer token.
    pub fn manager(&self) -> Result<&ExternalId, Denied> {
        match self {
            Caller::Manager { id, .. } => Ok(id),
            Caller::Customer { .. } => Err(Denied(
                "this call needs a manager token (roles: manager)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ExternalId {
        ExternalId::try_from(s.to_owned()).expect("valid id")
    }

    fn customer(s: &str) -> Caller {
        Caller::Customer { id: id(s) }
    }

    fn manager(s: &str, talents: &[&str]) -> Caller {
        Caller::Manager {
            id: id(s),
            talents: talents.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn an_empty_customer_id_means_the_caller() {
        assert_eq!(customer("alice").customer_for(""), Ok(id("alice")));
        assert_eq!(customer("alice").customer_for("alice"), Ok(id("alice")));
    }

    #[test]
    fn another_customers_id_is_denied() {
        assert!(customer("alice").customer_for("bob").is_err());
    }

    #[test]
    fn a_manager_token_does_not_act_as_a_customer() {
        assert!(manager("lee", &["t-1"]).customer_for("lee").is_err());
        assert!(!manager("lee", &["t-1"]).owns("lee"));
    }

    #[test]
    fn ownership_and_management_are_exact() {
        assert!(customer("alice").owns("alice"));
        assert!(!customer("alice").owns("alice2"));
        assert!(manager("lee", &["t-1", "t-2"]).manages("t-2"));
        assert!(!manager("lee", &["t-1"]).manages("t-3"));
        assert!(!customer("t-1").manages("t-1"));
        assert!(customer("alice").manager().is_err());
        assert_eq!(manager("lee", &[]).manager(), Ok(&id("lee")));
    }
}
