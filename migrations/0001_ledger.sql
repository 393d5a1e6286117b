-- The ledger: which file versions ferry has loaded, the loads, the load errors
-- and the configured jobs. Written for Redshift's rules (no enforced keys, no
-- TEXT, no SERIAL); it also runs on PostgreSQL 15.
--
-- `/*@redshift … */` blocks are applied on Redshift only; PostgreSQL reads
-- them as comments. Load-once comes from the load transaction (lock the
-- ledger, skip versions already present), never from a UNIQUE constraint.

CREATE TABLE IF NOT EXISTS ferry_jobs (
    job          VARCHAR(64)   NOT NULL,
    source       VARCHAR(64)   NOT NULL,
    path         VARCHAR(1024) NOT NULL,
    pattern      VARCHAR(256)  NOT NULL,
    target       VARCHAR(127)  NOT NULL,
    auto         BOOLEAN       NOT NULL,
    updated_at   TIMESTAMPTZ   NOT NULL
) /*@redshift DISTSTYLE ALL */;

CREATE TABLE IF NOT EXISTS ferry_files (
    job            VARCHAR(64)   NOT NULL,
    path           VARCHAR(1024) NOT NULL,
    size           BIGINT        NOT NULL,
    mtime          BIGINT        NOT NULL,
    sha256         VARCHAR(64),
    state          VARCHAR(16)   NOT NULL,
    staged_key     VARCHAR(1024),
    rows_loaded    BIGINT        NOT NULL,
    rows_rejected  BIGINT        NOT NULL,
    first_seen_at  TIMESTAMPTZ   NOT NULL,
    loaded_at      TIMESTAMPTZ,
    load_id        VARCHAR(64),
    error          VARCHAR(4096),
    finalized_at   TIMESTAMPTZ,
    final_path     VARCHAR(1024)
) /*@redshift DISTKEY (job) SORTKEY (job, path) */;

CREATE TABLE IF NOT EXISTS ferry_loads (
    load_id      VARCHAR(64)   NOT NULL,
    job          VARCHAR(64)   NOT NULL,
    files        INTEGER       NOT NULL,
    rows_loaded  BIGINT        NOT NULL,
    bytes        BIGINT        NOT NULL,
    started_at   TIMESTAMPTZ   NOT NULL,
    finished_at  TIMESTAMPTZ   NOT NULL,
    duration_ms  BIGINT        NOT NULL
) /*@redshift DISTKEY (job) SORTKEY (started_at) */;

CREATE TABLE IF NOT EXISTS ferry_load_errors (
    job              VARCHAR(64)   NOT NULL,
    path             VARCHAR(1024) NOT NULL,
    size             BIGINT        NOT NULL,
    mtime            BIGINT        NOT NULL,
    load_id          VARCHAR(64),
    line_number      BIGINT,
    column_name      VARCHAR(127),
    error_code       INTEGER       NOT NULL,
    reason           VARCHAR(1024) NOT NULL,
    raw_line         VARCHAR(1024),
    raw_field_value  VARCHAR(1024),
    created_at       TIMESTAMPTZ   NOT NULL
) /*@redshift DISTKEY (job) SORTKEY (created_at) */;
