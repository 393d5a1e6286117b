-- Post-load checks: one row per check per committed load. A check is a
-- query of the job's (`checks = [...]`) that returns the rows that are
-- wrong; `passed` when it returned none.

CREATE TABLE IF NOT EXISTS ferry_checks (
    job           VARCHAR(64)   NOT NULL,
    load_id       VARCHAR(64)   NOT NULL,
    check_name    VARCHAR(64)   NOT NULL,
    passed        BOOLEAN       NOT NULL,
    failing_rows  BIGINT        NOT NULL,
    detail        VARCHAR(4096),
    checked_at    TIMESTAMPTZ   NOT NULL
) /*@redshift DISTKEY (job) SORTKEY (checked_at) */;
