//! Audits the four services' databases against each other after a run: the money
//! (every charge matches a paid order, none twice), the bookings (every charged order
//! has exactly one), my page (each row equals what the owning services say), and the
//! plumbing (outboxes empty). Reads the tables directly, as an auditor would.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::{Svc, System};

/// What one audit found. Every count but `orders` must be zero for a clean run.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Audit {
    /// Orders in order-svc.
    pub orders: usize,
    /// Events that should have had an effect and did not: a charged order with no
    /// booking, an order with no my page row, an outbox row never delivered.
    pub lost_events: usize,
    /// Charges that do not match exactly one paid (or refunded) order: two payments
    /// for one order, a PAID order without an approved payment, a refund the order
    /// does not know of.
    pub double_charges: usize,
    /// Money kept without a booking: an approved, unrefunded payment whose order is
    /// not PAID (given up, declined, cancelled or rejected).
    pub kept_charges: usize,
    /// Orders still PENDING_PAYMENT.
    pub stuck_orders: usize,
    /// My page rows that differ from the owning services' state.
    pub mypage_mismatches: usize,
    /// Order statuses, for the report.
    pub by_status: HashMap<String, usize>,
    /// Payment statuses, for the report (VOIDED: orders given up before any charge).
    pub payments_by_status: HashMap<String, usize>,
    /// The first few problems, in words.
    pub problems: Vec<String>,
}

impl Audit {
    /// Whether every zero-count is zero.
    pub fn clean(&self) -> bool {
        self.lost_events == 0
            && self.double_charges == 0
            && self.kept_charges == 0
            && self.stuck_orders == 0
            && self.mypage_mismatches == 0
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < 10 {
            self.problems.push(text);
        }
    }
}

type Row = HashMap<String, Option<String>>;

async fn rows(system: &System, svc: Svc, sql: &str, columns: &[&str]) -> anyhow::Result<Vec<Row>> {
    let db = system.db(svc).await;
    let result = db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await;
    let _ = db.close().await;
    let mut out = Vec::new();
    for r in result? {
        let mut row = Row::new();
        for c in columns {
            let v: Option<String> = r.try_get("", c)?;
            row.insert((*c).to_owned(), v);
        }
        out.push(row);
    }
    Ok(out)
}

fn get<'a>(row: &'a Row, column: &str) -> Option<&'a str> {
    row.get(column).and_then(|v| v.as_deref())
}

/// Events still waiting in each service's outbox.
pub async fn outbox_backlog(system: &System) -> anyhow::Result<usize> {
    let mut total = 0;
    for svc in Svc::ALL {
        let n = rows(
            system,
            svc,
            "SELECT CAST(COUNT(*) AS TEXT) AS n FROM outbox_events",
            &["n"],
        )
        .await?;
        total += n
            .first()
            .and_then(|r| get(r, "n"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// Audits the system as it is now.
pub async fn audit(system: &System) -> anyhow::Result<Audit> {
    let orders = rows(
        system,
        Svc::Order,
        "SELECT order_id, status, payment_id, CAST(refunded AS TEXT) AS refunded FROM orders",
        &["order_id", "status", "payment_id", "refunded"],
    )
    .await?;
    let payments = rows(
        system,
        Svc::Payment,
        "SELECT payment_id, order_id, status FROM payments",
        &["payment_id", "order_id", "status"],
    )
    .await?;
    let bookings = rows(
        system,
        Svc::Reservation,
        "SELECT order_id, status FROM reservations",
        &["order_id", "status"],
    )
    .await?;
    let pages = rows(
        system,
        Svc::MyPage,
        "SELECT order_id, order_status, payment_status, reservation_status FROM my_page_entries",
        &[
            "order_id",
            "order_status",
            "payment_status",
            "reservation_status",
        ],
    )
    .await?;

    let mut a = Audit {
        orders: orders.len(),
        ..Default::default()
    };
    let mut payments_by_order: HashMap<&str, Vec<&Row>> = HashMap::new();
    for p in &payments {
        *a.payments_by_status
            .entry(get(p, "status").unwrap_or("").to_owned())
            .or_default() += 1;
        payments_by_order
            .entry(get(p, "order_id").unwrap_or(""))
            .or_default()
            .push(p);
    }
    let mut bookings_by_order: HashMap<&str, Vec<&Row>> = HashMap::new();
    for b in &bookings {
        bookings_by_order
            .entry(get(b, "order_id").unwrap_or(""))
            .or_default()
            .push(b);
    }
    let pages_by_order: HashMap<&str, &Row> = pages
        .iter()
        .map(|p| (get(p, "order_id").unwrap_or(""), p))
        .collect();
    let orders_by_id: HashMap<&str, &Row> = orders
        .iter()
        .map(|o| (get(o, "order_id").unwrap_or(""), o))
        .collect();

    for o in &orders {
        let id = get(o, "order_id").unwrap_or("");
        let status = get(o, "status").unwrap_or("");
        *a.by_status.entry(status.to_owned()).or_default() += 1;
        let refunded = get(o, "refunded") == Some("true");
        let ps = payments_by_order.get(id).cloned().unwrap_or_default();
        if ps.len() > 1 {
            a.double_charges += ps.len() - 1;
            a.problem(format!("order {id}: {} payments", ps.len()));
        }
        let payment_status = ps.first().and_then(|p| get(p, "status"));
        let consistent = match (status, payment_status) {
            ("PAID", Some("APPROVED")) => true,
            ("PAYMENT_DECLINED", Some("DECLINED")) => true,
            ("CANCELLED", Some("REFUNDED")) | ("REJECTED", Some("REFUNDED")) => refunded,
            // Given up before any charge: voided at payment-svc first (or, for orders
            // from before voids, no payment at all).
            ("CANCELLED", Some("VOIDED")) | ("CANCELLED", None) => !refunded,
            (_, Some("APPROVED")) if status != "PENDING_PAYMENT" => {
                a.kept_charges += 1;
                a.problem(format!(
                    "order {id}: {status} but its payment is APPROVED and not refunded"
                ));
                true
            }
            ("PENDING_PAYMENT", _) => {
                a.stuck_orders += 1;
                a.problem(format!(
                    "order {id}: still PENDING_PAYMENT (payment {payment_status:?})"
                ));
                true
            }
            _ => false,
        };
        if !consistent {
            a.double_charges += 1;
            a.problem(format!(
                "order {id}: status {status} (refunded={refunded}) but payment {payment_status:?}"
            ));
        }
        // A charged order has exactly one booking, made from payment.approved.
        let charged = matches!(payment_status, Some("APPROVED") | Some("REFUNDED"));
        let bs = bookings_by_order.get(id).map(Vec::len).unwrap_or(0);
        if charged && bs != 1 {
            a.lost_events += 1;
            a.problem(format!("order {id}: charged but {bs} bookings"));
        }
        if !charged && status != "CANCELLED" && bs != 0 {
            a.lost_events += 1;
            a.problem(format!(
                "order {id}: {status} without a charge but {bs} bookings"
            ));
        }
        let booking_status = bookings_by_order
            .get(id)
            .and_then(|v| v.first())
            .and_then(|b| get(b, "status"));
        match pages_by_order.get(id) {
            None => {
                a.lost_events += 1;
                a.problem(format!("order {id}: no my page row"));
            }
            Some(page) => {
                let seen = (
                    get(page, "order_status"),
                    get(page, "payment_status"),
                    get(page, "reservation_status"),
                );
                // A void moves no money and is not announced: my page shows no payment.
                let shown_payment = payment_status.filter(|p| *p != "VOIDED");
                let truth = (Some(status), shown_payment, booking_status);
                if seen != truth {
                    a.mypage_mismatches += 1;
                    a.problem(format!(
                        "order {id}: my page shows {seen:?}, services say {truth:?}"
                    ));
                }
            }
        }
    }
    for p in &payments {
        let order_id = get(p, "order_id").unwrap_or("");
        if !orders_by_id.contains_key(order_id) {
            a.double_charges += 1;
            a.problem(format!(
                "payment {:?}: no order {order_id}",
                get(p, "payment_id")
            ));
        }
    }
    for page in &pages {
        if !orders_by_id.contains_key(get(page, "order_id").unwrap_or("")) {
            a.mypage_mismatches += 1;
            a.problem(format!(
                "my page row for unknown order {:?}",
                get(page, "order_id")
            ));
        }
    }
    Ok(a)
}
