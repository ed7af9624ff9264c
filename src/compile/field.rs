//! Field paths (`spec.http[3].match[0].uri`), built for every route and destination whether or
//! not an error ends up naming them: joined from their pieces into one `String` sized up front,
//! without the formatting machinery (`format!` was ~6 % of a 10,000-route load + compile). Names
//! the compile builds per route the same way (`ns/vs/http[2]`) use it too.

/// A piece of a field path: a name, or an index.
pub(super) trait Piece {
    fn size(&self) -> usize;
    fn put(&self, out: &mut String);
}

impl Piece for str {
    fn size(&self) -> usize {
        self.len()
    }
    fn put(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Piece for String {
    fn size(&self) -> usize {
        self.len()
    }
    fn put(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Piece for usize {
    fn size(&self) -> usize {
        // Decimal digits.
        (self.checked_ilog10().unwrap_or(0) + 1) as usize
    }
    fn put(&self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(*self));
    }
}

impl<T: Piece + ?Sized> Piece for &T {
    fn size(&self) -> usize {
        (**self).size()
    }
    fn put(&self, out: &mut String) {
        (**self).put(out);
    }
}

/// `fpath!(field, ".match[", j, "]")`: the pieces joined, as `format!("{field}.match[{j}]")`.
macro_rules! fpath {
    ($($piece:expr),+ $(,)?) => {{
        use $crate::compile::field::Piece as _;
        let mut out = String::with_capacity(0 $(+ (&$piece).size())+);
        $( (&$piece).put(&mut out); )+
        out
    }};
}
pub(super) use fpath;

#[cfg(test)]
mod tests {
    #[test]
    fn joins_names_and_indexes_as_format_does() {
        let field = String::from("spec.http[12]");
        for j in [0usize, 7, 10, 99, 100, 12345, usize::MAX] {
            let p = fpath!(field, ".match[", j, "]");
            assert_eq!(p, format!("{field}.match[{j}]"));
            assert_eq!(p.capacity(), p.len());
        }
        let name: &str = "x-user";
        assert_eq!(fpath!("spec", ".headers.", name), "spec.headers.x-user");
    }
}
