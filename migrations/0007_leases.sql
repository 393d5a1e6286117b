-- Leases: with several replicas and a work queue, one replica per job (the
-- holder of the job's row) lists its source and sends new versions to the
-- queue. The holder renews its row every poll; a row whose expires_at has
-- passed is free for any replica to take. Written only in a transaction
-- that locks this table first, never together with the ledger lock.

CREATE TABLE IF NOT EXISTS ferry_leases (
    job         VARCHAR(64)   NOT NULL,
    owner       VARCHAR(256)  NOT NULL,
    taken_at    TIMESTAMPTZ   NOT NULL,
    renewed_at  TIMESTAMPTZ   NOT NULL,
    expires_at  TIMESTAMPTZ   NOT NULL
) /*@redshift DISTSTYLE ALL */;
