/// Hard limits applied while parsing requests. Defaults are Redis' defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted (`proto-max-bulk-len`, 512 MB).
    pub bulk_len_max: usize,
    /// Largest number of arguments in one multibulk request (Redis: INT_MAX;
    /// cairn bounds it by the query buffer anyway).
    pub multibulk_len_max: usize,
    /// Longest inline command line (Redis' PROTO_INLINE_MAX_SIZE, 64 KB).
    pub inline_len_max: usize,
    /// Most bytes one client may have buffered but not yet executed
    /// (`client-query-buffer-limit`, 1 GB).
    pub query_buffer_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bulk_len_max: 512 * 1024 * 1024,
            multibulk_len_max: i32::MAX as usize,
            inline_len_max: 64 * 1024,
            query_buffer_max: 1024 * 1024 * 1024,
        }
    }
}
