-- Example task-event warehouse: a fact table and three dimensions. The
-- ferry_* columns record where each row came from and which load wrote it.

CREATE TABLE IF NOT EXISTS task_events (
    event_id         VARCHAR(64)    NOT NULL,
    task_id          VARCHAR(64)    NOT NULL,
    event_type       VARCHAR(32)    NOT NULL,
    status           VARCHAR(32),
    user_id          VARCHAR(64),
    source_system    VARCHAR(64),
    occurred_at      TIMESTAMPTZ    NOT NULL,
    duration_ms      BIGINT,
    attempt          INTEGER,
    payload          VARCHAR(65535),
    ferry_file       VARCHAR(1024),
    ferry_line       BIGINT,
    ferry_load_id    VARCHAR(64),
    ferry_loaded_at  TIMESTAMPTZ
) /*@redshift DISTKEY (task_id) SORTKEY (occurred_at) */;

CREATE TABLE IF NOT EXISTS dim_task (
    task_id          VARCHAR(64)    NOT NULL,
    last_status      VARCHAR(32),
    last_event_type  VARCHAR(32),
    last_event_at    TIMESTAMPTZ
) /*@redshift DISTKEY (task_id) SORTKEY (task_id) */;

CREATE TABLE IF NOT EXISTS dim_user (
    user_id          VARCHAR(64)    NOT NULL
) /*@redshift DISTSTYLE ALL SORTKEY (user_id) */;

CREATE TABLE IF NOT EXISTS dim_source_system (
    source_system    VARCHAR(64)    NOT NULL
) /*@redshift DISTSTYLE ALL SORTKEY (source_system) */;
