-- Where the rejected records of a file version went: the S3 key of a gzip
-- CSV (line, column, code, reason, raw value, raw line) holding every one,
-- while ferry_load_errors keeps the first 1000. staged_key now holds the
-- folder of the staged parts (ending in '/').

ALTER TABLE ferry_files ADD COLUMN rejects_key VARCHAR(1024);
