//! Pins the parts of the contract that other crates are written against: the
//! packages, services and RPCs, the exact shape of the payment and event
//! messages, and that the descriptor set served by reflection carries them with
//! their documentation.

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet, field_descriptor_proto::Type};
use talentshare_proto::{FILE_DESCRIPTOR_SET, events, payment};

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

fn file<'a>(set: &'a FileDescriptorSet, package: &str) -> &'a FileDescriptorProto {
    set.file
        .iter()
        .find(|f| f.package() == package)
        .unwrap_or_else(|| panic!("package {package} is in the descriptor set"))
}

/// `(name, number, type, type_name)` of one field; `type_name` is empty for scalars.
type Field = (String, i32, Type, String);

/// Every field of `message`, in declaration order.
fn fields(file: &FileDescriptorProto, message: &str) -> Vec<Field> {
    file.message_type
        .iter()
        .find(|m| m.name() == message)
        .unwrap_or_else(|| panic!("message {message} is in {}", file.name()))
        .field
        .iter()
        .map(|f| {
            (
                f.name().to_owned(),
                f.number(),
                f.r#type(),
                f.type_name().to_owned(),
            )
        })
        .collect()
}

fn scalar(name: &str, number: i32, ty: Type) -> Field {
    (name.to_owned(), number, ty, String::new())
}

fn typed(name: &str, number: i32, ty: Type, type_name: &str) -> Field {
    (name.to_owned(), number, ty, type_name.to_owned())
}

#[test]
fn descriptor_set_holds_every_service_with_its_rpcs() {
    let set = descriptor_set();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "talentshare.order.v1",
            "OrderService",
            &["PlaceOrder", "GetOrder", "ListOrders", "CancelOrder"],
        ),
        (
            "talentshare.payment.v1",
            "PaymentService",
            &["Pay", "Refund", "Void", "GetPayment", "ListPayments"],
        ),
        (
            "talentshare.reservation.v1",
            "ReservationService",
            &[
                "ConfirmReservation",
                "RejectReservation",
                "GetReservation",
                "ListReservations",
            ],
        ),
        (
            "talentshare.mypage.v1",
            "MyPageService",
            &["GetMyPage", "GetMyPageEntry", "WatchMyPage"],
        ),
    ];
    for (package, service, rpcs) in cases {
        let file = file(&set, package);
        let svc = file
            .service
            .iter()
            .find(|s| s.name() == *service)
            .unwrap_or_else(|| panic!("{package}.{service} exists"));
        let names: Vec<&str> = svc.method.iter().map(|m| m.name()).collect();
        assert_eq!(names, *rpcs, "RPCs of {package}.{service}");
        for method in &svc.method {
            assert_eq!(
                method.input_type(),
                format!(".{package}.{}Request", method.name()),
                "request type of {service}.{}",
                method.name()
            );
            assert_eq!(
                method.output_type(),
                format!(".{package}.{}Response", method.name()),
                "response type of {service}.{}",
                method.name()
            );
            assert_eq!(
                method.server_streaming(),
                method.name() == "WatchMyPage",
                "streaming of {service}.{}",
                method.name()
            );
        }
    }
    let events = file(&set, "talentshare.events.v1");
    assert!(
        events.service.is_empty(),
        "the events package has no service"
    );
    assert_eq!(
        events.dependency,
        ["google/protobuf/timestamp.proto"],
        "the events package imports no service package"
    );
}

#[test]
fn payment_messages_keep_their_exact_fields() {
    use Type::{Enum, Int32, Int64, Message as Msg, String as Str};
    let set = descriptor_set();
    let f = file(&set, "talentshare.payment.v1");
    let ts = ".google.protobuf.Timestamp";
    let cases: Vec<(&str, Vec<Field>)> = vec![
        (
            "PayRequest",
            vec![
                scalar("order_id", 1, Str),
                scalar("customer_id", 2, Str),
                scalar("amount_minor", 3, Int64),
                scalar("currency", 4, Str),
                scalar("card_number", 5, Str),
                typed("booking", 6, Msg, ".talentshare.payment.v1.BookingDetails"),
            ],
        ),
        (
            "BookingDetails",
            vec![
                scalar("talent_id", 1, Str),
                typed("session_start_time", 2, Msg, ts),
                scalar("session_minutes", 3, Int32),
            ],
        ),
        (
            "PayResponse",
            vec![typed("payment", 1, Msg, ".talentshare.payment.v1.Payment")],
        ),
        (
            "RefundRequest",
            vec![scalar("payment_id", 1, Str), scalar("reason", 2, Str)],
        ),
        (
            "RefundResponse",
            vec![typed("payment", 1, Msg, ".talentshare.payment.v1.Payment")],
        ),
        (
            "GetPaymentRequest",
            vec![scalar("payment_id", 1, Str), scalar("order_id", 2, Str)],
        ),
        (
            "GetPaymentResponse",
            vec![typed("payment", 1, Msg, ".talentshare.payment.v1.Payment")],
        ),
        (
            "ListPaymentsRequest",
            vec![
                scalar("page_size", 1, Int32),
                scalar("page_token", 2, Str),
                scalar("customer_id", 3, Str),
                typed("status", 4, Enum, ".talentshare.common.v1.PaymentStatus"),
            ],
        ),
        (
            "ListPaymentsResponse",
            vec![
                typed("payments", 1, Msg, ".talentshare.payment.v1.Payment"),
                scalar("next_page_token", 2, Str),
            ],
        ),
        (
            "Payment",
            vec![
                scalar("payment_id", 1, Str),
                scalar("order_id", 2, Str),
                scalar("customer_id", 3, Str),
                scalar("amount_minor", 4, Int64),
                scalar("currency", 5, Str),
                typed("status", 6, Enum, ".talentshare.common.v1.PaymentStatus"),
                typed(
                    "decline_reason",
                    7,
                    Enum,
                    ".talentshare.common.v1.DeclineReason",
                ),
                scalar("card_last4", 8, Str),
                typed("create_time", 9, Msg, ts),
                typed("update_time", 10, Msg, ts),
                scalar("refund_reason", 11, Str),
                scalar("void_reason", 12, Str),
                typed("booking", 13, Msg, ".talentshare.payment.v1.BookingDetails"),
            ],
        ),
        (
            "VoidRequest",
            vec![
                scalar("order_id", 1, Str),
                scalar("customer_id", 2, Str),
                scalar("amount_minor", 3, Int64),
                scalar("currency", 4, Str),
                scalar("reason", 5, Str),
            ],
        ),
        (
            "VoidResponse",
            vec![typed("payment", 1, Msg, ".talentshare.payment.v1.Payment")],
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(
            fields(f, message),
            expected,
            "fields of payment.v1.{message}"
        );
    }

    // The oneof and the enums, through the generated Rust types.
    let by_order = payment::GetPaymentRequest {
        lookup: Some(payment::get_payment_request::Lookup::OrderId("o".into())),
    };
    assert!(matches!(
        by_order.lookup,
        Some(payment::get_payment_request::Lookup::OrderId(_))
    ));
    let statuses = [
        (
            payment::PaymentStatus::Unspecified,
            "PAYMENT_STATUS_UNSPECIFIED",
            0,
        ),
        (
            payment::PaymentStatus::Approved,
            "PAYMENT_STATUS_APPROVED",
            1,
        ),
        (
            payment::PaymentStatus::Declined,
            "PAYMENT_STATUS_DECLINED",
            2,
        ),
        (
            payment::PaymentStatus::Refunded,
            "PAYMENT_STATUS_REFUNDED",
            3,
        ),
        (payment::PaymentStatus::Voided, "PAYMENT_STATUS_VOIDED", 4),
    ];
    for (status, name, number) in statuses {
        assert_eq!((status.as_str_name(), status as i32), (name, number));
    }
    let reasons = [
        (
            payment::DeclineReason::Unspecified,
            "DECLINE_REASON_UNSPECIFIED",
            0,
        ),
        (
            payment::DeclineReason::CardDeclined,
            "DECLINE_REASON_CARD_DECLINED",
            1,
        ),
        (
            payment::DeclineReason::InsufficientFunds,
            "DECLINE_REASON_INSUFFICIENT_FUNDS",
            2,
        ),
        (
            payment::DeclineReason::ExpiredCard,
            "DECLINE_REASON_EXPIRED_CARD",
            3,
        ),
        (
            payment::DeclineReason::LimitExceeded,
            "DECLINE_REASON_LIMIT_EXCEEDED",
            4,
        ),
    ];
    for (reason, name, number) in reasons {
        assert_eq!((reason.as_str_name(), reason as i32), (name, number));
    }
}

#[test]
fn event_envelope_keeps_its_exact_fields_and_payload_numbers() {
    use Type::{Int64, Message as Msg, String as Str};
    let set = descriptor_set();
    let f = file(&set, "talentshare.events.v1");
    let ev = |name: &str| format!(".talentshare.events.v1.{name}");
    let mut expected = vec![
        scalar("event_id", 1, Str),
        scalar("event_type", 2, Str),
        scalar("aggregate_id", 3, Str),
        scalar("aggregate_version", 4, Int64),
        typed("occurred_at", 5, Msg, ".google.protobuf.Timestamp"),
        scalar("order_id", 6, Str),
        scalar("customer_id", 7, Str),
    ];
    let payloads = [
        ("order_placed", 10, "OrderPlaced"),
        ("order_paid", 11, "OrderPaid"),
        ("order_payment_declined", 12, "OrderPaymentDeclined"),
        ("order_cancelled", 13, "OrderCancelled"),
        ("order_rejected", 14, "OrderRejected"),
        ("payment_approved", 20, "PaymentApproved"),
        ("payment_declined", 21, "PaymentDeclined"),
        ("payment_refunded", 22, "PaymentRefunded"),
        ("reservation_requested", 30, "ReservationRequested"),
        ("reservation_confirmed", 31, "ReservationConfirmed"),
        ("reservation_rejected", 32, "ReservationRejected"),
        ("reservation_cancelled", 33, "ReservationCancelled"),
    ];
    for (field, number, message) in payloads {
        expected.push(typed(field, number, Msg, &ev(message)));
    }
    assert_eq!(
        fields(f, "EventEnvelope"),
        expected,
        "fields of EventEnvelope"
    );

    let names = |m: &str| -> Vec<String> { fields(f, m).into_iter().map(|x| x.0).collect() };
    let cases: &[(&str, &[&str])] = &[
        (
            "OrderPlaced",
            &[
                "talent_id",
                "session_start_time",
                "session_minutes",
                "amount_minor",
                "currency",
            ],
        ),
        ("OrderPaid", &["payment_id"]),
        ("OrderPaymentDeclined", &["payment_id", "decline_reason"]),
        ("OrderCancelled", &["payment_id", "reason", "refunded"]),
        ("OrderRejected", &["reservation_id", "reason"]),
        (
            "PaymentApproved",
            &[
                "payment_id",
                "amount_minor",
                "currency",
                "card_last4",
                "talent_id",
                "session_start_time",
                "session_minutes",
            ],
        ),
        (
            "PaymentDeclined",
            &["payment_id", "amount_minor", "currency", "decline_reason"],
        ),
        (
            "PaymentRefunded",
            &["payment_id", "amount_minor", "currency", "reason"],
        ),
        (
            "ReservationRequested",
            &[
                "reservation_id",
                "payment_id",
                "talent_id",
                "session_start_time",
                "session_minutes",
            ],
        ),
        ("ReservationConfirmed", &["reservation_id", "manager_id"]),
        (
            "ReservationRejected",
            &["reservation_id", "manager_id", "reason", "payment_id"],
        ),
        ("ReservationCancelled", &["reservation_id", "reason"]),
    ];
    for (message, expected) in cases {
        assert_eq!(names(message), *expected, "fields of events.v1.{message}");
    }
}

#[test]
fn event_envelope_round_trips_through_protobuf() {
    let envelope = events::EventEnvelope {
        event_id: "0190a6d2-0000-7000-8000-000000000001".into(),
        event_type: "payment.approved".into(),
        aggregate_id: "0190a6d2-0000-7000-8000-000000000002".into(),
        aggregate_version: 1,
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        order_id: "0190a6d2-0000-7000-8000-000000000003".into(),
        customer_id: "customer-1".into(),
        payload: Some(events::event_envelope::Payload::PaymentApproved(
            events::PaymentApproved {
                payment_id: "0190a6d2-0000-7000-8000-000000000002".into(),
                amount_minor: 50_000,
                currency: "KRW".into(),
                card_last4: "4242".into(),
                talent_id: "talent.7".into(),
                session_start_time: Some(prost_types::Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 0,
                }),
                session_minutes: 60,
            },
        )),
    };
    let decoded = events::EventEnvelope::decode(envelope.encode_to_vec().as_slice())
        .expect("an encoded envelope decodes");
    assert_eq!(decoded, envelope);
}

#[test]
fn descriptor_set_carries_the_documentation_for_reflection() {
    let set = descriptor_set();
    for package in [
        "talentshare.order.v1",
        "talentshare.payment.v1",
        "talentshare.reservation.v1",
        "talentshare.mypage.v1",
        "talentshare.events.v1",
    ] {
        let info = file(&set, package)
            .source_code_info
            .as_ref()
            .unwrap_or_else(|| panic!("{package} keeps its source info"));
        assert!(
            info.location.iter().any(|l| l
                .leading_comments
                .as_deref()
                .is_some_and(|c| !c.trim().is_empty())),
            "{package} keeps its comments"
        );
    }
}

/// The public packages (what the SDKs ship) import neither the internal
/// PaymentService nor the bus, and `talentshare.common.v1` holds values only: a
/// public SDK generated from them never contains PaymentService or its card field.
#[test]
fn public_packages_import_no_internal_package() {
    let set = descriptor_set();
    for package in [
        "talentshare.common.v1",
        "talentshare.order.v1",
        "talentshare.reservation.v1",
        "talentshare.mypage.v1",
    ] {
        for f in set.file.iter().filter(|f| f.package() == package) {
            for dep in &f.dependency {
                assert!(
                    dep.starts_with("google/protobuf/")
                        || dep.starts_with("talentshare/common/v1/"),
                    "{} imports {dep}",
                    f.name()
                );
            }
            if package == "talentshare.common.v1" {
                assert!(
                    f.service.is_empty() && f.message_type.is_empty(),
                    "{}",
                    f.name()
                );
            }
        }
    }
    // The reasons clients branch on are listed in the protos.
    let errors = set
        .file
        .iter()
        .find(|f| f.name() == "talentshare/common/v1/errors.proto")
        .expect("errors.proto");
    let reasons = &errors.enum_type[0];
    assert_eq!(reasons.name(), "ErrorReason");
    assert!(reasons.value.len() > 20, "{:?}", reasons.value.len());
}
