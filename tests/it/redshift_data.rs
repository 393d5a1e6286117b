//! The local Redshift Data API endpoint, driven through the real
//! aws-sdk-redshiftdata client: batches are one transaction, statements run
//! in the background and are polled, results come back as typed fields,
//! parameters bind, failures and cancels end as FAILED and ABORTED.

use crate::harness::{Stack, TestDb, database_url};
use aws_sdk_redshiftdata::Client;
use aws_sdk_redshiftdata::types::{Field, SqlParameter, StatusString};
use ferry::testkit::redshift_data::RedshiftDataServer;
use std::time::Duration;

async fn client(server: &RedshiftDataServer) -> Client {
    let conf = aws_sdk_redshiftdata::Config::builder()
        .behavior_version(aws_sdk_redshiftdata::config::BehaviorVersion::latest())
        .region(aws_sdk_redshiftdata::config::Region::new("eu-west-1"))
        .endpoint_url(server.endpoint())
        .credentials_provider(aws_sdk_redshiftdata::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    Client::from_conf(conf)
}

/// The id of a submitted call.
fn id_of(id: Option<&str>) -> String {
    id.expect("the call has an id").to_string()
}

/// Polls DescribeStatement until the statement ends.
async fn wait(
    c: &Client,
    id: &str,
) -> aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput {
    for _ in 0..500 {
        let d = c
            .describe_statement()
            .id(id)
            .send()
            .await
            .expect("describe");
        match d.status() {
            Some(StatusString::Finished | StatusString::Failed | StatusString::Aborted) => {
                return d;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("statement {id} did not end");
}

/// Submits a batch and waits for it to end.
async fn batch(
    c: &Client,
    sqls: &[String],
) -> aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput {
    let id = c
        .batch_execute_statement()
        .set_sqls(Some(sqls.to_vec()))
        .send()
        .await
        .map(|o| id_of(o.id()))
        .expect("batch accepted");
    wait(c, &id).await
}

/// Asserts a statement failed with `text` in its error.
fn assert_failed(
    d: &aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput,
    text: &str,
) {
    assert_eq!(d.status(), Some(&StatusString::Failed), "{d:?}");
    assert!(d.error().unwrap_or_default().contains(text), "{d:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_results_parameters_failures_and_cancels_through_the_sdk() {
    let db = TestDb::new().await;
    let server = RedshiftDataServer::start(&database_url()).await.unwrap();
    let c = client(&server).await;
    let t = db.t("people");

    // A batch: one transaction; the SELECT's rows come back typed.
    let id = c
        .batch_execute_statement()
        .database("dev")
        .cluster_identifier("local")
        .sqls(format!(
            "CREATE TABLE {t} (id INTEGER, name VARCHAR(10), ok BOOLEAN)"
        ))
        .sqls(format!(
            "INSERT INTO {t} VALUES (1, 'a', true), (2, NULL, false)"
        ))
        .sqls(format!("SELECT id, name, ok FROM {t} ORDER BY id"))
        .send()
        .await
        .map(|o| id_of(o.id()))
        .expect("batch accepted");
    let d = wait(&c, &id).await;
    assert_eq!(d.status(), Some(&StatusString::Finished), "{d:?}");
    let subs = d.sub_statements();
    assert_eq!(subs.len(), 3);
    assert_eq!(subs[2].id(), format!("{id}:3"));
    assert_eq!(subs[1].result_rows(), 2, "INSERT reports rows affected");
    let err = c
        .get_statement_result()
        .id(&id)
        .send()
        .await
        .expect_err("a batch's result needs a sub-statement id");
    assert!(format!("{err:?}").contains("sub-statement id"), "{err:?}");
    let r = c
        .get_statement_result()
        .id(format!("{id}:3"))
        .send()
        .await
        .expect("result");
    assert_eq!(r.column_metadata()[1].name(), Some("name"));
    assert_eq!(
        r.records(),
        &[
            vec![
                Field::LongValue(1),
                Field::StringValue("a".into()),
                Field::BooleanValue(true)
            ],
            vec![
                Field::LongValue(2),
                Field::IsNull(true),
                Field::BooleanValue(false)
            ],
        ]
    );

    // Parameters bind as values, quotes and all.
    let id = c
        .execute_statement()
        .database("dev")
        .sql(format!(
            "SELECT count(*) FROM {t} WHERE name = :name OR id = :id"
        ))
        .parameters(
            SqlParameter::builder()
                .name("name")
                .value("it's")
                .build()
                .unwrap(),
        )
        .parameters(
            SqlParameter::builder()
                .name("id")
                .value("2")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .map(|o| id_of(o.id()))
        .unwrap();
    assert_eq!(wait(&c, &id).await.status(), Some(&StatusString::Finished));
    let r = c.get_statement_result().id(&id).send().await.unwrap();
    assert_eq!(r.records(), &[vec![Field::LongValue(1)]]);

    // A failing statement rolls the whole batch back.
    let d = batch(
        &c,
        &[
            format!("INSERT INTO {t} VALUES (3, 'c', true)"),
            "SELECT 1 / 0".into(),
        ],
    )
    .await;
    assert_failed(&d, "division by zero");
    assert_eq!(
        d.sub_statements()[1].status(),
        Some(&aws_sdk_redshiftdata::types::StatementStatusString::Failed)
    );
    assert_eq!(db.count("people").await, 2, "the batch rolled back");

    // A running statement can be cancelled.
    let id = c
        .execute_statement()
        .sql("SELECT pg_sleep(10)")
        .send()
        .await
        .map(|o| id_of(o.id()))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        c.cancel_statement()
            .id(&id)
            .send()
            .await
            .unwrap()
            .status()
            .unwrap_or(false)
    );
    assert_eq!(wait(&c, &id).await.status(), Some(&StatusString::Aborted));

    // An unknown id is a ResourceNotFoundException.
    let err = c
        .describe_statement()
        .id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .expect_err("unknown id");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{err:?}"
    );
    db.drop_schema().await;
}

/// Gzips `text` into a file under `dir`.
fn gz_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join(name);
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_from_s3_reads_a_manifest_or_a_prefix_into_the_batch_transaction() {
    let stack = Stack::start().await;
    let db = TestDb::new().await;
    let stager = stack.stager("").await;
    let server = RedshiftDataServer::start_with_s3(&database_url(), Some(stager.client().clone()))
        .await
        .unwrap();
    let c = client(&server).await;
    let dir = stack.dir.path();
    let a = gz_file(dir, "a.csv.gz", "1,\\N\n2,\"\"\n");
    let b = gz_file(dir, "b.csv.gz", "3,\"x, \"\"y\"\"\"\n");
    stager
        .upload_file(&a, "ferry/staged/j/a/part-00000.csv.gz")
        .await
        .unwrap();
    stager
        .upload_file(&b, "ferry/staged/j/b/part-00000.csv.gz")
        .await
        .unwrap();
    let manifest = dir.join("m.manifest");
    std::fs::write(
        &manifest,
        format!(
            r#"{{"entries":[{{"url":"{}","mandatory":true}},{{"url":"{}","mandatory":true}}]}}"#,
            stager.url("ferry/staged/j/a/part-00000.csv.gz"),
            stager.url("ferry/staged/j/b/part-00000.csv.gz")
        ),
    )
    .unwrap();
    stager
        .upload_raw(&manifest, "ferry/manifests/m.manifest")
        .await
        .unwrap();

    let t = db.t("copied");
    let copy = |from: &str| {
        format!(
            "COPY ferry_stage (id, name) FROM '{from}' IAM_ROLE 'arn:aws:iam::123456789012:role/ferry' {} GZIP CSV NULL AS '\\N' TIMEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF",
            if from.ends_with(".manifest") {
                "MANIFEST"
            } else {
                ""
            }
        )
    };
    let d = batch(
        &c,
        &[
            format!("CREATE TABLE {t} (id INTEGER, name VARCHAR(20))"),
            format!("CREATE TEMP TABLE ferry_stage (LIKE {t})"),
            copy(&stager.url("ferry/manifests/m.manifest")),
            format!("INSERT INTO {t} SELECT * FROM ferry_stage"),
        ],
    )
    .await;
    assert_eq!(d.status(), Some(&StatusString::Finished), "{d:?}");
    assert_eq!(
        d.sub_statements()[2].result_rows(),
        3,
        "COPY reports the rows it loaded"
    );
    let rows: Vec<(i32, Option<String>)> = db
        .client
        .query(&format!("SELECT id, name FROM {t} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, None),
            (2, Some(String::new())),
            (3, Some("x, \"y\"".into()))
        ],
        "NULL and the empty string stay apart"
    );

    // A prefix loads every object under it; a missing one fails the batch.
    let d = batch(
        &c,
        &[
            format!("CREATE TEMP TABLE ferry_stage (LIKE {t})"),
            copy(&stager.url("ferry/staged/j/")),
            format!("INSERT INTO {t} SELECT * FROM ferry_stage"),
        ],
    )
    .await;
    assert_eq!(d.status(), Some(&StatusString::Finished), "{d:?}");
    assert_eq!(db.count("copied").await, 6);
    let d = batch(
        &c,
        &[copy(&stager.url("ferry/staged/nothing-here/")).replace("ferry_stage", &t)],
    )
    .await;
    assert_failed(&d, "does not exist");
    db.drop_schema().await;
}
