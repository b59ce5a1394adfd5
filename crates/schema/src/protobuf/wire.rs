//! The protobuf wire format: a message is a sequence of `(tag << 3 | wire type, value)` pairs.

/// A field's value as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Wire<'a> {
    /// Wire type 0: int32, int64, bool, enum.
    Varint(u64),
    /// Wire type 1: double, fixed64.
    Fixed64(u64),
    /// Wire type 2: string, bytes, messages, packed repeated scalars.
    Len(&'a [u8]),
    /// Wire type 5: float, fixed32.
    Fixed32(u32),
}

impl Wire<'_> {
    /// The wire type number, for messages.
    pub fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Len(_) => 2,
            Wire::Fixed32(_) => 5,
        }
    }
}

/// What is wrong with the bytes themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireError {
    /// The message ends inside a field.
    Truncated,
    /// A varint longer than 10 bytes.
    BadVarint,
    /// Wire type 3, 4 (groups), 6 or 7.
    BadWireType(u8),
    /// Field number 0.
    ZeroTag,
}

/// Reads the fields of one message in order.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>, WireError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| WireError::BadVarint)?;
        if tag == 0 {
            return Err(WireError::ZeroTag);
        }
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.array()?)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                Wire::Len(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(self.array()?)),
            // The cast is exact: the value is masked to 3 bits.
            other => return Err(WireError::BadWireType(other as u8)),
        };
        Ok(Some((tag, value)))
    }

    /// A varint (also the elements of packed repeated integers).
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(if self.buf.len() < 10 { WireError::Truncated } else { WireError::BadVarint })
    }

    /// Eight little-endian bytes (also the elements of packed repeated doubles).
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_wire_type_and_stops_at_the_end() {
        let bytes =
            [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.next_field(), Ok(Some((1, Wire::Varint(150)))));
        assert_eq!(r.next_field(), Ok(Some((2, Wire::Len(b"hi")))));
        assert_eq!(r.next_field(), Ok(Some((3, Wire::Fixed64(1)))));
        assert_eq!(r.next_field(), Ok(Some((4, Wire::Fixed32(2)))));
        assert_eq!(r.next_field(), Ok(None));
    }

    #[test]
    fn truncation_groups_and_long_varints_are_errors() {
        assert_eq!(Reader::new(&[0x12, 0x05, b'a']).next_field(), Err(WireError::Truncated));
        assert_eq!(Reader::new(&[0x08, 0x80]).next_field(), Err(WireError::Truncated));
        assert_eq!(Reader::new(&[0x0b]).next_field(), Err(WireError::BadWireType(3)));
        assert_eq!(Reader::new(&[0x00, 0x01]).next_field(), Err(WireError::ZeroTag));
        let long = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&long).next_field(), Err(WireError::BadVarint));
    }
}
