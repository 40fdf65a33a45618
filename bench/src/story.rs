//! The rest of the mixed story (`--story mixed`), played by the worker whose
//! PlaceOrder was just answered with a paid order: sometimes the customer cancels it
//! at once, sometimes the talent's manager confirms or rejects its booking, and
//! sometimes the customer reads their page. Each call is recorded under its RPC's
//! name, with its latency and its errors by gRPC code.
//!
//! The manager learns the booking's id from the customer's my page entry, as the
//! customer's app would show it: my page is eventually consistent, so the worker
//! asks again (every [`POLL_PAUSE`], for up to [`RESERVATION_WAIT`]) while the entry
//! is not there yet or has no reservation. Those early answers are expected and
//! counted as outcomes, not errors.

use std::time::Duration;

use talentshare_proto::mypage::{GetMyPageEntryRequest, GetMyPageRequest};
use talentshare_proto::order::{CancelOrderRequest, Order, OrderStatus};
use talentshare_proto::reservation::{ConfirmReservationRequest, RejectReservationRequest};
use tokio::time::Instant;
use tonic::Code;

use crate::load::{Call, Load};
use crate::settings::Story;
use crate::target::Customer;

/// Share of paid orders the customer cancels right after placing them.
const CANCEL: f64 = 0.10;
/// Share of paid orders whose booking the manager handles during the run (the
/// others stay requested, as a manager who has not got to them yet).
const MANAGE: f64 = 0.30;
/// Share of handled bookings the manager rejects rather than confirms.
const REJECT: f64 = 0.25;
/// Share of orders after which the customer reads the first page of their page.
const READ: f64 = 0.30;

/// How long the manager waits for a booking to show on my page.
const RESERVATION_WAIT: Duration = Duration::from_secs(10);
/// The pause between two looks at my page.
const POLL_PAUSE: Duration = Duration::from_millis(100);

/// The longest one order's story can take, for the open loop's final wait: its
/// PlaceOrder, the wait for the booking (whose last look may start just before the
/// wait ends), the manager's call and the page read.
pub fn longest(story: Story, timeout: Duration) -> Duration {
    match story {
        Story::Place => timeout,
        Story::Mixed => timeout * 4 + RESERVATION_WAIT,
    }
}

/// Plays what follows PlaceOrder for `order` of `customer`.
pub async fn follow_up(load: &Load, customer: &Customer, order: &Order) {
    if order.status() == OrderStatus::Paid {
        let draw: f64 = rand::random();
        if draw < CANCEL {
            // Its entry will never show a standing booking: not a lag sample.
            if let Some(lag) = &load.lag {
                lag.forget(&order.order_id);
            }
            cancel(load, customer, order).await;
        } else if draw < CANCEL + MANAGE {
            manage(load, customer, order).await;
        }
    }
    if rand::random::<f64>() < READ {
        let mut client = customer.mypage.clone();
        let request = GetMyPageRequest {
            page_size: 20,
            ..Default::default()
        };
        timed(load, "GetMyPage", client.get_my_page(request), plain).await;
    }
}

async fn cancel(load: &Load, customer: &Customer, order: &Order) {
    let mut client = customer.client.clone();
    let request = CancelOrderRequest {
        order_id: order.order_id.clone(),
        reason: "bench: mixed story".into(),
    };
    timed(load, "CancelOrder", client.cancel_order(request), plain).await;
}

/// Waits for the booking on my page, then has the manager confirm or reject it.
async fn manage(load: &Load, customer: &Customer, order: &Order) {
    let Some(manager) = &load.manager else {
        return;
    };
    let Some(reservation_id) = reservation_of(load, customer, order).await else {
        return;
    };
    let mut manager = manager.clone();
    if rand::random::<f64>() < REJECT {
        let request = RejectReservationRequest {
            reservation_id,
            reason: "bench: talent unavailable".into(),
            ..Default::default()
        };
        timed(
            load,
            "RejectReservation",
            manager.reject_reservation(request),
            plain,
        )
        .await;
    } else {
        let request = ConfirmReservationRequest {
            reservation_id,
            ..Default::default()
        };
        timed(
            load,
            "ConfirmReservation",
            manager.confirm_reservation(request),
            plain,
        )
        .await;
    }
}

/// The order's reservation id once my page shows it; `None` (counted as the error
/// `no reservation within 10s`) if it does not in time.
async fn reservation_of(load: &Load, customer: &Customer, order: &Order) -> Option<String> {
    let deadline = Instant::now() + RESERVATION_WAIT;
    let mut client = customer.mypage.clone();
    while Instant::now() < deadline {
        let request = GetMyPageEntryRequest {
            order_id: order.order_id.clone(),
        };
        let answer = timed(
            load,
            "GetMyPageEntry",
            client.get_my_page_entry(request),
            |r| match r {
                Ok(r) if reservation_id(r).is_some() => Call::Answered("ok"),
                Ok(_) => Call::Expected("no reservation yet"),
                // Documented: no event about the order has reached my page yet.
                Err(s) if s.code() == Code::PermissionDenied => {
                    Call::Expected("not yet on my page")
                }
                Err(s) => Call::Failed(format!("{:?}", s.code())),
            },
        )
        .await;
        if let Some(Ok(r)) = &answer
            && let Some(id) = reservation_id(r)
        {
            return Some(id.to_owned());
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    load.recorder.record_rpc(
        "GetMyPageEntry",
        Duration::ZERO,
        Call::Failed(format!("no reservation within {RESERVATION_WAIT:?}")),
    );
    None
}

/// An answer is fine, an error is counted by its code.
fn plain<T>(answer: &Result<tonic::Response<T>, tonic::Status>) -> Call {
    match answer {
        Ok(_) => Call::Answered("ok"),
        Err(s) => Call::Failed(format!("{:?}", s.code())),
    }
}

fn reservation_id(
    r: &tonic::Response<talentshare_proto::mypage::GetMyPageEntryResponse>,
) -> Option<&str> {
    r.get_ref()
        .entry
        .as_ref()
        .map(|e| e.reservation_id.as_str())
        .filter(|id| !id.is_empty())
}

/// Runs one call under the request timeout and records it under `rpc`; `judge`
/// says what an answer (or gRPC error) means. Returns the answer, `None` on timeout.
async fn timed<T>(
    load: &Load,
    rpc: &'static str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    judge: impl FnOnce(&Result<tonic::Response<T>, tonic::Status>) -> Call,
) -> Option<Result<tonic::Response<T>, tonic::Status>> {
    let sent = Instant::now();
    let answer = tokio::time::timeout(load.request_timeout, call).await;
    let latency = sent.elapsed();
    match answer {
        Ok(answer) => {
            load.recorder.record_rpc(rpc, latency, judge(&answer));
            Some(answer)
        }
        Err(_) => {
            load.recorder
                .record_rpc(rpc, latency, Call::Failed("timeout".to_owned()));
            None
        }
    }
}
