//! Lazy regeneration with exact fixed-point arithmetic.
//!
//! A rate is stored in thousandths of a unit per second (`500` = 0.5 gold/s). Over `ms`
//! milliseconds a resource earns `rate_milli × ms` micro-units (millionths of a unit). The
//! micro-units that do not yet make a whole unit are carried in the resource (`regen_carry`), so
//! accruing over many short intervals yields exactly what one long interval would: nothing is lost
//! to rounding and nothing is counted twice. Accrual stops at `max_amount`, and a full resource
//! banks no carry.

use crate::domain::{Balance, Timestamp};

/// Micro-units in one unit.
pub const MICRO_PER_UNIT: u64 = 1_000_000;

/// Highest accepted rate: one million units per second. It keeps `rate × ms` far inside u128.
pub const MAX_REGEN_MILLI: u64 = 1_000_000_000;

/// The balance after regenerating from `balance.regen_at` up to `now`.
///
/// Never overflows: the product is computed in u128 and the result is capped at `max_amount`.
/// If `now` is earlier than `regen_at` (a clock stepped back, or another node's clock is behind)
/// nothing accrues and the anchor stays where it was.
pub fn accrue(balance: Balance, max_amount: u64, rate_milli: u64, now: Timestamp) -> Balance {
    if now <= balance.regen_at {
        return balance;
    }
    if balance.amount >= max_amount || rate_milli == 0 {
        return Balance {
            amount: balance.amount,
            regen_carry: 0,
            regen_at: now,
        };
    }
    let elapsed = u128::from(now.ms_since(balance.regen_at));
    let micro = u128::from(balance.regen_carry) + u128::from(rate_milli) * elapsed;
    let whole = micro / u128::from(MICRO_PER_UNIT);
    let carry = (micro % u128::from(MICRO_PER_UNIT)) as u32;
    let room = u128::from(max_amount - balance.amount);
    if whole >= room {
        Balance {
            amount: max_amount,
            regen_carry: 0,
            regen_at: now,
        }
    } else {
        // whole < room ≤ u64::MAX, so the cast and the sum are exact.
        Balance {
            amount: balance.amount + whole as u64,
            regen_carry: carry,
            regen_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bal(amount: u64, carry: u32, at: i64) -> Balance {
        Balance {
            amount,
            regen_carry: carry,
            regen_at: Timestamp(at),
        }
    }

    #[test]
    fn half_a_unit_per_second_earns_one_unit_every_two_seconds() {
        let b = accrue(bal(10, 0, 0), 100, 500, Timestamp(1_999));
        assert_eq!((b.amount, b.regen_carry), (10, 999_500));
        let b = accrue(b, 100, 500, Timestamp(2_000));
        assert_eq!((b.amount, b.regen_carry), (11, 0));
    }

    #[test]
    fn many_small_steps_equal_one_large_step() {
        let mut b = bal(0, 0, 0);
        for t in (7..=70_000).step_by(7) {
            b = accrue(b, 1_000_000, 333, Timestamp(t));
        }
        let once = accrue(bal(0, 0, 0), 1_000_000, 333, Timestamp(70_000));
        assert_eq!(b, once);
    }

    #[test]
    fn accrual_stops_at_max_and_banks_nothing() {
        let b = accrue(bal(99, 0, 0), 100, 1_000, Timestamp(60_000));
        assert_eq!((b.amount, b.regen_carry), (100, 0));
    }

    #[test]
    fn a_clock_that_steps_back_takes_nothing_away() {
        let b = accrue(bal(5, 42, 10_000), 100, 1_000, Timestamp(9_000));
        assert_eq!(b, bal(5, 42, 10_000));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let b = accrue(
            bal(0, 0, i64::MIN),
            u64::MAX,
            MAX_REGEN_MILLI,
            Timestamp(i64::MAX),
        );
        assert_eq!(b.amount, u64::MAX);
    }
}
