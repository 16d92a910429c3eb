//! Guards cross into JavaScript as plain numbers ("tokens"), not objects: creating a wrapped
//! native object per acquisition costs microseconds and a GC finalizer, the whole budget of the
//! fast path. A token is `id * 2 + owner_died`; ids stay below 2^29 (`handles.rs`), so a token
//! is a small integer that V8 returns without allocating.

/// A decoded token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub id: u64,
    pub owner_died: bool,
}

impl Token {
    pub(crate) fn encode(self) -> f64 {
        (self.id * 2 + u64::from(self.owner_died)) as f64
    }

    /// A token handed over as its integer (the call slot, `call_slot.rs`): the same range as
    /// [`decode`](Self::decode) accepts.
    pub(crate) fn from_raw(raw: u64) -> napi::Result<Token> {
        if !(2..1 << 53).contains(&raw) {
            return Err(crate::errors::coded("EINVAL", format!("{raw} is not a lock token")));
        }
        Ok(Token { id: raw / 2, owner_died: raw & 1 != 0 })
    }

    pub(crate) fn decode(value: f64) -> napi::Result<Token> {
        // `as u64` saturates and truncates; the round trip rejects fractions, NaN and overflow.
        if !((2.0..9_007_199_254_740_992.0).contains(&value) && (value as u64) as f64 == value) {
            return Err(crate::errors::coded("EINVAL", format!("{value} is not a lock token")));
        }
        let raw = value as u64;
        Ok(Token { id: raw / 2, owner_died: raw & 1 != 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn tokens_round_trip() {
        for (id, owner_died) in [(1, false), (7, true), (1 << 50, true)] {
            let token = Token { id, owner_died };
            assert_eq!(Token::decode(token.encode()).unwrap(), token);
        }
        assert!(Token::decode(0.0).is_err());
        assert!(Token::decode(5.5).is_err());
        assert!(Token::decode(f64::NAN).is_err());
        for raw in [2, 7, (1 << 53) - 1] {
            assert_eq!(Token::from_raw(raw).unwrap(), Token::decode(raw as f64).unwrap());
        }
        for raw in [0, 1, 1 << 53, u64::MAX] {
            assert!(Token::from_raw(raw).is_err(), "{raw}");
        }
    }
}
