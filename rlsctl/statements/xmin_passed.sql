-- Whether every transaction that was running when a data key became active has ended.
SELECT pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot()) > %(xid)s::bigint AS passed;
