//! Broker least privilege across the real binaries: `talentshare topology` declares the
//! topology as an admin (as the chart's hook Job does), then each service runs as its
//! own RabbitMQ user that may declare nothing, publish only its own routing keys and
//! read only its own queue, and the whole story still works; meanwhile my page's
//! credentials are refused when they try to publish `payment.approved`.

use e2e::{System, binary_path};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use talentshare_proto::order::{CancelOrderRequest, OrderStatus};
use talentshare_proto::payment::PaymentStatus;
use talentshare_proto::reservation::{ConfirmReservationRequest, ReservationStatus};
use testkit::{BrokerUsers, USERS_EXCHANGE};

use crate::flows::booking_of;
use crate::{GOOD_CARD, MANAGER, place_order};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_works_with_a_least_privilege_broker_user_per_service() {
    let users = BrokerUsers::create(&["order-svc", "payment-svc", "reservation-svc", "mypage-svc"]);
    let topology = std::process::Command::new(binary_path("talentshare"))
        .arg("topology")
        .env("AMQP_URL", users.admin_url())
        .env("EVENTS_EXCHANGE", USERS_EXCHANGE)
        .output()
        .expect("run talentshare topology");
    assert!(
        topology.status.success(),
        "talentshare topology: {}",
        String::from_utf8_lossy(&topology.stderr)
    );
    let system = System::start_with_broker_users(&users).await;

    // The story: place (payment.approved reaches reservation-svc), confirm, cancel
    // (order.cancelled reaches reservation-svc), my page following every step.
    let order = system
        .order_as("alice")
        .place_order(place_order("alice", GOOD_CARD))
        .await
        .expect("place")
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.status(), OrderStatus::Paid);
    let booking = booking_of(&system, &order.order_id).await;
    system
        .reservation_as_manager(MANAGER, &["coach-kim"])
        .confirm_reservation(ConfirmReservationRequest {
            reservation_id: booking.reservation_id.clone(),
            manager_id: String::new(),
        })
        .await
        .expect("confirm");
    system
        .wait_mypage(
            "alice",
            &order.order_id,
            "my page shows it confirmed",
            |e| e.reservation_status() == ReservationStatus::Confirmed,
        )
        .await;
    system
        .order_as("alice")
        .cancel_order(CancelOrderRequest {
            order_id: order.order_id.clone(),
            reason: "least privilege works".into(),
        })
        .await
        .expect("cancel");
    system
        .wait_mypage(
            "alice",
            &order.order_id,
            "my page shows it cancelled",
            |e| {
                e.reservation_status() == ReservationStatus::Cancelled
                    && e.payment_status() == PaymentStatus::Refunded
                    && e.order_status() == OrderStatus::Cancelled
            },
        )
        .await;

    // A compromised public-facing my page cannot forge a payment approval.
    let conn = lapin::Connection::connect(&users.service_url("mypage-svc"), Default::default())
        .await
        .expect("mypage-svc's user connects");
    let forged = async {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let confirm = ch
            .basic_publish(
                USERS_EXCHANGE.into(),
                "payment.approved".into(),
                BasicPublishOptions::default(),
                b"forged",
                Default::default(),
            )
            .await?
            .await?;
        // A refused publish closes the channel; one more round trip makes it visible.
        ch.basic_qos(1, Default::default()).await?;
        Ok::<_, lapin::Error>(confirm)
    }
    .await;
    match forged {
        Err(e) => assert!(platform::amqp::is_access_refused(&e), "{e:?}"),
        Ok(c) => panic!("mypage-svc published payment.approved: {c:?}"),
    }
    let _ = conn.close(200, "done".into()).await;
    system.shutdown().await;
}
