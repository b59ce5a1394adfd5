//! The RocksDB instance of a node: one column family per MVCC table plus the raft log and the
//! raft metadata, and [`RocksEngine`], the MVCC tables as a `corten_store::mvcc::Engine`.

use std::path::Path;
use std::sync::Arc;

use corten_store::mvcc::{Batch, BatchOp, Engine, Table};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

use crate::error::{Error, Result};

/// The raft log: log index (u64 big-endian) -> bincode `Entry`.
pub(crate) const CF_LOG: &str = "raft_log";
/// Raft metadata: vote, committed and last purged log ids.
pub(crate) const CF_RAFT_META: &str = "raft_meta";

/// Memory budget: one block cache shared by every column family, for data blocks. Index and
/// filter blocks are not in it: they stay in memory with their table (about 1% of the data), as
/// every write looks up the previous version of its key and a cache too small for the data
/// evicted them, so that each lookup re-read and re-checksummed whole index blocks (half the CPU
/// of a 64-writer put run, measured; see docs/PERF.md).
const BLOCK_CACHE_BYTES: usize = 16 << 20;
/// Memtable size of one column family.
const WRITE_BUFFER_BYTES: usize = 8 << 20;
/// All memtables together.
const DB_WRITE_BUFFER_BYTES: usize = 32 << 20;

/// The column family of an MVCC table.
pub(crate) fn table_cf(table: Table) -> &'static str {
    table.name()
}

/// Opens (creating when missing) the RocksDB instance at `path`.
pub(crate) fn open_db(path: &Path) -> Result<Arc<DB>> {
    let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    let cf_options = || {
        let mut block = BlockBasedOptions::default();
        block.set_block_cache(&cache);
        block.set_bloom_filter(10.0, false);
        let mut o = Options::default();
        o.set_block_based_table_factory(&block);
        o.set_compression_type(DBCompressionType::None);
        o.set_write_buffer_size(WRITE_BUFFER_BYTES);
        o.set_max_write_buffer_number(2);
        o
    };
    let mut db_options = cf_options();
    db_options.create_if_missing(true);
    db_options.create_missing_column_families(true);
    db_options.set_db_write_buffer_size(DB_WRITE_BUFFER_BYTES);
    db_options.set_keep_log_file_num(3);
    db_options.set_max_total_wal_size(64 << 20);
    let names = Table::ALL.iter().map(|t| table_cf(*t)).chain([CF_LOG, CF_RAFT_META]);
    let cfs: Vec<_> = names.map(|name| ColumnFamilyDescriptor::new(name, cf_options())).collect();
    let db = DB::open_cf_descriptors(&db_options, path, cfs).map_err(|e| Error::Rocks {
        op: "open",
        path: Some(path.to_path_buf()),
        source: e,
    })?;
    Ok(Arc::new(db))
}

/// The handle of a column family that `open_db` created.
pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a ColumnFamily> {
    db.cf_handle(name).ok_or(Error::MissingColumnFamily(name))
}

/// Wraps a RocksDB error.
pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> Error {
    move |source| Error::Rocks { op, path: None, source }
}

/// Write options: `sync` makes the write durable (fsync of the WAL) before it returns.
pub(crate) fn write_options(sync: bool) -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(sync);
    o
}

/// Calls `f` on every entry of column family `cf_name` in `[start, end)` (`end == None`: no upper
/// bound), in key order, until it returns `false`; reads from `snapshot` when given.
pub(crate) fn scan_cf(
    db: &DB,
    cf_name: &'static str,
    start: &[u8],
    end: Option<&[u8]>,
    snapshot: Option<&rocksdb::Snapshot<'_>>,
    f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<()> {
    let mut opts = ReadOptions::default();
    if let Some(end) = end {
        opts.set_iterate_upper_bound(end.to_vec());
    }
    if let Some(s) = snapshot {
        opts.set_snapshot(s);
    }
    let mut it = db.raw_iterator_cf_opt(cf(db, cf_name)?, opts);
    it.seek(start);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !f(k, v) {
            return Ok(());
        }
        it.next();
    }
    it.status().map_err(rocks("iterate"))
}

/// The MVCC tables in their column families: what `Mvcc` runs on.
///
/// Batches are committed without fsync: the state machine is rebuilt from the (synced) raft log
/// after a crash, and its applied log id is part of every batch, so data and applied id never
/// disagree.
#[derive(Clone)]
pub struct RocksEngine {
    db: Arc<DB>,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine").field("path", &self.db.path()).finish()
    }
}

impl RocksEngine {
    /// The tables of `db` (opened by this crate, so the column families exist).
    pub(crate) fn new(db: Arc<DB>) -> Self {
        RocksEngine { db }
    }

    /// The database.
    pub(crate) fn db(&self) -> &Arc<DB> {
        &self.db
    }
}

/// Deletes every entry of every MVCC table (before a snapshot is written in).
pub(crate) fn clear_tables(db: &DB) -> Result<()> {
    for table in Table::ALL {
        let cf_name = table_cf(table);
        let cf = cf(db, cf_name)?;
        let mut batch = WriteBatch::default();
        let mut result = Ok(());
        scan_cf(db, cf_name, &[], None, None, &mut |k, _| {
            batch.delete_cf(cf, k);
            if batch.size_in_bytes() >= 4 << 20 {
                result = db.write_opt(std::mem::take(&mut batch), &write_options(false));
            }
            result.is_ok()
        })?;
        result.map_err(rocks("clear table"))?;
        db.write_opt(batch, &write_options(false)).map_err(rocks("clear table"))?;
    }
    Ok(())
}

impl Engine for RocksEngine {
    fn get(&self, table: Table, key: &[u8]) -> corten_store::Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(cf(&self.db, table_cf(table))?, key).map_err(rocks("get"))?)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> corten_store::Result<()> {
        Ok(scan_cf(&self.db, table_cf(table), start, end, None, f)?)
    }

    fn last_in(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
    ) -> corten_store::Result<Option<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(None);
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(start.to_vec());
        opts.set_iterate_upper_bound(end.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf(&self.db, table_cf(table))?, opts);
        it.seek_for_prev(end);
        let found = match (it.key(), it.value()) {
            (Some(k), Some(v)) if k < end && k >= start => Some((k.to_vec(), v.to_vec())),
            _ => None,
        };
        it.status().map_err(rocks("seek"))?;
        Ok(found)
    }

    fn write(&mut self, batch: Batch) -> corten_store::Result<()> {
        let mut wb = WriteBatch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put { table, key, value } => wb.put_cf(cf(&self.db, table_cf(table))?, key, value),
                BatchOp::Delete { table, key } => wb.delete_cf(cf(&self.db, table_cf(table))?, key),
            }
        }
        Ok(self.db.write_opt(wb, &write_options(false)).map_err(rocks("write batch"))?)
    }
}
