//! Composition: B identical backends share no event and no invariant in the checker's
//! world, so one backend's exploration decides them all; the product's figures are counted.

use super::report::{CheckReport, Product};

/// `C(n + k - 1, k)`: multisets of `k` drawn from `n` (saturating).
pub(super) fn multisets(n: usize, k: usize) -> u128 {
    let n = n as u128;
    let mut count: u128 = 1;
    for i in 1..=k as u128 {
        // count = C(n + i - 2, i - 1) here; times (n + i - 1) / i is the next.
        count = match count.checked_mul(n + i - 1) {
            Some(product) => product / i,
            None => return u128::MAX,
        };
    }
    count
}

/// The report of B backends from the exploration of one (`one`), as the
/// product search over every interleaving would give it (see
/// [`super::CheckOptions::product`]):
///
/// - every event the checker delivers goes to one backend and every
///   invariant is about one backend's transition (the publisher's tick and
///   a reload reach each backend as its own event, which includes every
///   order a shared delivery could take), so a product state breaks an
///   invariant exactly when one of its backends does, and the shortest
///   counter-example is one backend's, the others idle;
/// - with symmetry reduction, the product's states are the multisets of B
///   reachable one-backend states, `C(N + B - 1, B)`; its deepest level
///   has every backend at its deepest, `B * depth`. (Transitions are not
///   counted: states the fingerprint identifies may differ in self-loops,
///   and which one a search keeps depends on its order.)
pub(super) fn compose(one: CheckReport, backends: usize) -> CheckReport {
    let product = Product {
        backends,
        states: multisets(one.states, backends),
        depth: one.depth.saturating_mul(backends),
    };
    CheckReport {
        product: Some(product),
        ..one
    }
}

#[cfg(test)]
mod tests {
    use super::multisets;

    #[test]
    fn multisets_count_pairs_and_triples() {
        assert_eq!(multisets(4, 1), 4);
        assert_eq!(multisets(4, 2), 10);
        assert_eq!(multisets(4, 3), 20);
        assert_eq!(multisets(1, 5), 1);
        assert_eq!(multisets(7, 0), 1);
        assert_eq!(multisets(usize::MAX, 8), u128::MAX);
    }
}
