//! The local Redshift Data API endpoint, driven through the real
//! aws-sdk-redshiftdata client: batches are one transaction, statements run
//! in the background and are polled, results come back as typed fields,
//! parameters bind, failures and cancels end as FAILED and ABORTED.

use crate::harness::{TestDb, database_url};
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
    let id = c
        .batch_execute_statement()
        .sqls(format!("INSERT INTO {t} VALUES (3, 'c', true)"))
        .sqls("SELECT 1 / 0")
        .send()
        .await
        .map(|o| id_of(o.id()))
        .unwrap();
    let d = wait(&c, &id).await;
    assert_eq!(d.status(), Some(&StatusString::Failed));
    assert!(
        d.error().unwrap_or_default().contains("division by zero"),
        "{d:?}"
    );
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
