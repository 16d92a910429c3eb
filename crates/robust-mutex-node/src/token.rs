//! Guards cross into JavaScript as plain numbers ("tokens"), not objects: creating a wrapped
//! native object per acquisition costs microseconds and a GC finalizer, the whole budget of the
//! fast path. A token is `id * 4 + remote * 2 + owner_died`, exact in a double up to 2^51 ids.

/// A decoded token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub id: u64,
    /// Held by the handle's waiter thread rather than the JS thread.
    pub remote: bool,
    pub owner_died: bool,
}

impl Token {
    pub(crate) fn encode(self) -> f64 {
        (self.id * 4 + u64::from(self.remote) * 2 + u64::from(self.owner_died)) as f64
    }

    pub(crate) fn decode(value: f64) -> napi::Result<Token> {
        // `as u64` saturates and truncates; the round trip rejects fractions, NaN and overflow.
        if !((4.0..9_007_199_254_740_992.0).contains(&value) && (value as u64) as f64 == value) {
            return Err(crate::errors::coded("EINVAL", format!("{value} is not a lock token")));
        }
        let raw = value as u64;
        Ok(Token { id: raw / 4, remote: raw & 2 != 0, owner_died: raw & 1 != 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn tokens_round_trip() {
        for (id, remote, owner_died) in [(1, false, false), (7, true, false), (1 << 40, true, true)] {
            let token = Token { id, remote, owner_died };
            assert_eq!(Token::decode(token.encode()).unwrap(), token);
        }
        assert!(Token::decode(0.0).is_err());
        assert!(Token::decode(5.5).is_err());
    }
}
