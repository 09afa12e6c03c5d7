//! The environment a configuration is read in.
//!
//! A jwtd configuration reads environment variables in three places: `${NAME}` inside its
//! strings, the secrets it names by variable (`secret_env`, `api_key_env`,
//! `client_secret_env`), and, in the service, the key encryption key (`JWTD_KEK`). None of them
//! reads the process environment directly: each is given an [`Env`], so an application that
//! embeds the engine (or a test, on one of many threads of one process) passes the variables
//! it means instead of setting process-wide ones. [`Env::process`], the default, is the process
//! environment: what the `jwtd` binary and the functions without an `Env` argument use.
//!
//! ```
//! use jwtd_gate::Env;
//!
//! let env = Env::from_vars([("API_AUDIENCE", "https://api.example")]);
//! assert_eq!(env.var("API_AUDIENCE").as_deref(), Some("https://api.example"));
//! assert_eq!(env.var("HOME"), None); // only the variables given
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::sync::Arc;

/// Where configuration reads its environment variables: the process environment
/// ([`Env::process`], the default) or a given set of variables ([`Env::from_vars`]). Cloning is
/// cheap (the variables are shared). Its `Debug` form names the variables, never their values
/// (they are often secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env(Vars);

#[derive(Clone, Default, PartialEq, Eq)]
enum Vars {
    /// `std::env::var_os`, read at each lookup.
    #[default]
    Process,
    /// Exactly these variables.
    Given(Arc<BTreeMap<String, OsString>>),
}

impl Env {
    /// The process environment, read at each lookup (so a variable set later is seen).
    pub fn process() -> Env {
        Env(Vars::Process)
    }

    /// No variables at all: every `${VAR}` and `*_env` secret is "not set".
    pub fn empty() -> Env {
        Env(Vars::Given(Arc::default()))
    }

    /// Exactly the variables `vars` (name, value), and none of the process's.
    pub fn from_vars<I, K, V>(vars: I) -> Env
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<OsString>,
    {
        Env(Vars::Given(Arc::new(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )))
    }

    /// The value of `name`, as the operating system holds it; `None` when it is not set.
    pub fn var_os(&self, name: &str) -> Option<OsString> {
        match &self.0 {
            Vars::Process => std::env::var_os(name),
            Vars::Given(vars) => vars.get(name).cloned(),
        }
    }

    /// The value of `name` when it is set and valid Unicode (as [`std::env::var`]); `None`
    /// otherwise.
    pub fn var(&self, name: &str) -> Option<String> {
        self.var_os(name).and_then(|v| v.into_string().ok())
    }
}

impl<K: Into<String>, V: Into<OsString>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(vars: I) -> Env {
        Env::from_vars(vars)
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Vars::Process => f.write_str("Env::process()"),
            Vars::Given(vars) => f
                .debug_tuple("Env::from_vars")
                .field(&vars.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Env;

    #[test]
    fn given_variables_are_the_only_ones_and_debug_hides_values() {
        let env: Env = [("A", "secret-value"), ("B", "")].into_iter().collect();
        assert_eq!(env.var("A").as_deref(), Some("secret-value"));
        assert_eq!(env.var("B").as_deref(), Some(""));
        assert_eq!(env.var("PATH"), None);
        let shown = format!("{env:?}");
        assert!(
            shown.contains("\"A\"") && !shown.contains("secret-value"),
            "{shown}"
        );
        assert_eq!(Env::default(), Env::process());
        assert_eq!(Env::empty().var_os("PATH"), None);
        assert_eq!(format!("{:?}", Env::process()), "Env::process()");
    }

    #[test]
    fn the_process_environment_is_read_at_each_lookup() {
        // Whether or not PATH is set; nothing here sets a variable.
        assert_eq!(Env::process().var_os("PATH"), std::env::var_os("PATH"));
    }
}
