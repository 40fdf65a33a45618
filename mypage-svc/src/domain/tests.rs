//! One test per rule of [`super::apply`], [`super::check`] and [`Entry::restore`],
//! and the convergence
//! property: any permutation of a story, with any repetitions, folds to the entry
//! the story gives in order.

use chrono::TimeZone;
use proptest::prelude::*;
use values::{AmountMinor, Currency};

use super::*;

fn id(s: &str) -> ExternalId {
    ExternalId::try_from(s.to_owned()).expect("test ids are valid")
}

fn at(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_900_000_000 + second, 0)
        .single()
        .expect("valid test time")
}

/// The events the real services emit for one order, built in causal order.
struct Story {
    order_id: Uuid,
    payment_id: Uuid,
    reservation_id: Uuid,
    customer: ExternalId,
    booking: Booking,
    price: Money,
    events: Vec<DomainEvent>,
}

impl Story {
    fn new() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            payment_id: Uuid::now_v7(),
            reservation_id: Uuid::now_v7(),
            customer: id("cust-1"),
            booking: Booking {
                talent_id: id("talent-7"),
                session_start: at(86_400),
                session_minutes: 60,
            },
            price: Money {
                amount: AmountMinor::try_from(15_000).expect("valid amount"),
                currency: Currency::Krw,
            },
            events: Vec::new(),
        }
    }

    /// Appends an event one second after the previous one.
    fn then(mut self, version: i64, change: Change) -> Self {
        let occurred_at = at(self.events.len() as i64);
        self.events.push(DomainEvent {
            order_id: self.order_id,
            customer_id: self.customer.clone(),
            version,
            occurred_at,
            change,
        });
        self
    }

    fn placed(self) -> Self {
        let change = Change::OrderPlaced {
            booking: self.booking.clone(),
            price: self.price,
        };
        self.then(1, change)
    }

    fn approved_and_paid(self) -> Self {
        let approved = Change::PaymentApproved {
            payment_id: self.payment_id,
            price: self.price,
            booking: self.booking.clone(),
        };
        let paid = Change::OrderPaid {
            payment_id: self.payment_id,
        };
        self.then(1, approved).then(2, paid)
    }

    fn declined(self) -> Self {
        let reason = Some("DECLINE_REASON_CARD_DECLINED".to_owned());
        let declined = Change::PaymentDeclined {
            payment_id: self.payment_id,
            price: self.price,
            decline_reason: reason.clone(),
        };
        let order_declined = Change::OrderPaymentDeclined {
            payment_id: self.payment_id,
            decline_reason: reason,
        };
        self.then(1, declined).then(2, order_declined)
    }

    fn requested(self) -> Self {
        let change = Change::ReservationRequested {
            reservation_id: self.reservation_id,
            payment_id: self.payment_id,
            booking: self.booking.clone(),
        };
        self.then(1, change)
    }

    fn confirmed(self) -> Self {
        let change = Change::ReservationConfirmed {
            reservation_id: self.reservation_id,
        };
        self.then(2, change)
    }

    /// The customer cancels a paid order: order-svc refunds first, then records it.
    fn cancelled_and_refunded(self, order_version: i64) -> Self {
        let refunded = Change::PaymentRefunded {
            payment_id: self.payment_id,
            price: self.price,
        };
        let cancelled = Change::OrderCancelled {
            payment_id: Some(self.payment_id),
        };
        self.then(2, refunded).then(order_version, cancelled)
    }

    fn reservation_cancelled(self, version: i64) -> Self {
        let change = Change::ReservationCancelled {
            reservation_id: self.reservation_id,
        };
        self.then(version, change)
    }

    /// The manager rejects: reservation-svc refunds, records, and order-svc follows.
    fn rejected(self) -> Self {
        let refunded = Change::PaymentRefunded {
            payment_id: self.payment_id,
            price: self.price,
        };
        let rejected = Change::ReservationRejected {
            reservation_id: self.reservation_id,
            payment_id: self.payment_id,
        };
        let order_rejected = Change::OrderRejected {
            reservation_id: Some(self.reservation_id),
        };
        self.then(2, refunded)
            .then(2, rejected)
            .then(3, order_rejected)
    }
}

/// Every story the services can tell about one order.
fn stories() -> Vec<Story> {
    vec![
        // Paid and confirmed.
        Story::new()
            .placed()
            .approved_and_paid()
            .requested()
            .confirmed(),
        // Declined: no reservation ever.
        Story::new().placed().declined(),
        // Confirmed, then cancelled by the customer.
        Story::new()
            .placed()
            .approved_and_paid()
            .requested()
            .confirmed()
            .cancelled_and_refunded(3)
            .reservation_cancelled(3),
        // Rejected by the manager.
        Story::new()
            .placed()
            .approved_and_paid()
            .requested()
            .rejected(),
        // Cancelled while the manager had not decided yet.
        Story::new()
            .placed()
            .approved_and_paid()
            .requested()
            .cancelled_and_refunded(3)
            .reservation_cancelled(2),
        // Cancelled before reservation-svc booked anything.
        Story::new()
            .placed()
            .approved_and_paid()
            .cancelled_and_refunded(3),
        // Cancelled while the payment was pending: settled (approved) and refunded.
        {
            let s = Story::new().placed();
            let approved = Change::PaymentApproved {
                payment_id: s.payment_id,
                price: s.price,
                booking: s.booking.clone(),
            };
            s.then(1, approved).cancelled_and_refunded(2)
        },
        // Cancelled before any payment existed.
        Story::new()
            .placed()
            .then(2, Change::OrderCancelled { payment_id: None }),
    ]
}

fn fold<'a>(events: impl IntoIterator<Item = &'a DomainEvent>) -> Option<Entry> {
    events.into_iter().fold(None, |row, e| Some(apply(row, e)))
}

fn story(n: usize) -> Story {
    stories().swap_remove(n)
}

fn record_of(e: &Entry) -> EntryRecord {
    let e = e.clone();
    EntryRecord {
        order_id: e.order_id,
        customer_id: e.customer_id,
        booking: e.booking,
        price: e.price,
        order_status: e.order.map(|v| v.status),
        order_version: e.order.map_or(0, |v| v.version),
        payment_status: e.payment.map(|v| v.status),
        payment_version: e.payment.map_or(0, |v| v.version),
        reservation_status: e.reservation.map(|v| v.status),
        reservation_version: e.reservation.map_or(0, |v| v.version),
        payment_id: e.payment_id,
        reservation_id: e.reservation_id,
        decline_reason: e.decline_reason,
        updated_at: e.updated_at,
    }
}

#[test]
fn restoring_what_the_fold_made_gives_the_same_entry() {
    for (n, s) in stories().iter().enumerate() {
        for len in 1..=s.events.len() {
            let entry = fold(&s.events[..len]).expect("at least one event");
            assert_eq!(
                Entry::restore(record_of(&entry)),
                Ok(entry),
                "story {n}, {len} events"
            );
        }
    }
}

#[test]
fn a_status_is_not_restored_without_a_version_nor_a_version_without_its_status() {
    let entry = fold(&story(0).events).expect("story 0 has events");
    let cases = [
        (
            EntryRecord {
                order_version: 0,
                ..record_of(&entry)
            },
            Invalid::Order,
        ),
        (
            EntryRecord {
                payment_status: None,
                ..record_of(&entry)
            },
            Invalid::Payment,
        ),
        (
            EntryRecord {
                reservation_version: -1,
                ..record_of(&entry)
            },
            Invalid::Reservation,
        ),
    ];
    for (record, invalid) in cases {
        assert_eq!(Entry::restore(record), Err(invalid), "{invalid:?}");
    }
}

#[test]
fn the_first_event_of_an_order_creates_its_entry_whatever_its_type() {
    let s = story(0);
    let confirmed = &s.events[4];
    let entry = apply(None, confirmed);
    assert_eq!(entry.order_id, s.order_id);
    assert_eq!(entry.customer_id, s.customer);
    assert_eq!(
        entry.reservation,
        Some(Versioned {
            version: 2,
            status: ReservationStatus::Confirmed
        })
    );
    assert_eq!(entry.reservation_id, Some(s.reservation_id));
    assert_eq!((entry.order, entry.payment), (None, None));
    assert_eq!((entry.booking, entry.price), (None, None));
    assert_eq!(entry.updated_at, confirmed.occurred_at);
}

#[test]
fn each_event_sets_the_status_of_its_own_dimension() {
    let s = story(2);
    let entry = fold(&s.events).expect("a story has events");
    assert_eq!(entry.order.map(|v| v.status), Some(OrderStatus::Cancelled));
    assert_eq!(
        entry.payment.map(|v| v.status),
        Some(PaymentStatus::Refunded)
    );
    assert_eq!(
        entry.reservation.map(|v| v.status),
        Some(ReservationStatus::Cancelled)
    );
    let rejected = fold(&story(3).events).expect("a story has events");
    assert_eq!(
        rejected.order.map(|v| v.status),
        Some(OrderStatus::Rejected)
    );
    assert_eq!(
        rejected.reservation.map(|v| v.status),
        Some(ReservationStatus::Rejected)
    );
}

#[test]
fn an_older_version_never_overwrites_a_newer_one() {
    let s = story(0);
    let (requested, confirmed) = (&s.events[3], &s.events[4]);
    let entry = apply(Some(apply(None, confirmed)), requested);
    assert_eq!(
        entry.reservation.map(|v| v.status),
        Some(ReservationStatus::Confirmed)
    );
    let entry = apply(Some(apply(None, requested)), confirmed);
    assert_eq!(
        entry.reservation.map(|v| v.status),
        Some(ReservationStatus::Confirmed)
    );
}

#[test]
fn order_paid_shows_the_approval_but_never_hides_a_refund() {
    let s = story(2);
    let paid = s
        .events
        .iter()
        .find(|e| matches!(e.change, Change::OrderPaid { .. }))
        .expect("story has order.paid");
    let refunded = s
        .events
        .iter()
        .find(|e| matches!(e.change, Change::PaymentRefunded { .. }))
        .expect("story has payment.refunded");
    let alone = apply(None, paid);
    assert_eq!(
        alone.payment,
        Some(Versioned {
            version: 1,
            status: PaymentStatus::Approved
        })
    );
    assert_eq!(alone.payment_id, Some(s.payment_id));
    let late = apply(Some(apply(None, refunded)), paid);
    assert_eq!(
        late.payment.map(|v| v.status),
        Some(PaymentStatus::Refunded)
    );
}

#[test]
fn order_payment_declined_shows_the_decline_and_its_reason() {
    let s = story(1);
    let entry = apply(None, &s.events[2]);
    assert_eq!(
        entry.order.map(|v| v.status),
        Some(OrderStatus::PaymentDeclined)
    );
    assert_eq!(
        entry.payment.map(|v| v.status),
        Some(PaymentStatus::Declined)
    );
    assert_eq!(
        entry.decline_reason.as_deref(),
        Some("DECLINE_REASON_CARD_DECLINED")
    );
}

#[test]
fn descriptive_fields_are_filled_from_whichever_event_carries_them() {
    let s = story(0);
    for carrier in [&s.events[0], &s.events[1], &s.events[3]] {
        let entry = apply(None, carrier);
        assert_eq!(entry.booking.as_ref(), Some(&s.booking), "{carrier:?}");
    }
    let approved = apply(None, &s.events[1]);
    assert_eq!(approved.price, Some(s.price));
    assert_eq!(approved.payment_id, Some(s.payment_id));
    let requested = apply(None, &s.events[3]);
    assert_eq!(requested.payment_id, Some(s.payment_id));
    assert_eq!(requested.reservation_id, Some(s.reservation_id));
    assert_eq!(requested.price, None, "reservation.requested has no price");
}

#[test]
fn a_filled_field_is_not_replaced() {
    let s = story(0);
    let mut other = s.events[3].clone();
    let Change::ReservationRequested { booking, .. } = &mut other.change else {
        panic!("event 3 is reservation.requested");
    };
    booking.session_minutes = 120;
    let entry = apply(Some(apply(None, &s.events[0])), &other);
    assert_eq!(entry.booking.as_ref(), Some(&s.booking));
}

#[test]
fn update_time_is_the_latest_occurred_at_of_the_events_folded_in() {
    let s = story(0);
    let entry = apply(Some(apply(None, &s.events[4])), &s.events[0]);
    assert_eq!(entry.updated_at, s.events[4].occurred_at);
}

#[test]
fn folding_an_event_twice_changes_nothing() {
    for s in stories() {
        for e in &s.events {
            let once = fold(&s.events);
            let twice = once.clone().map(|row| apply(Some(row), e));
            assert_eq!(once, twice, "{e:?}");
        }
    }
}

#[test]
fn equal_versions_with_different_statuses_fold_to_one_answer() {
    let s = story(0);
    let confirmed = s.events[4].clone();
    let mut cancelled = confirmed.clone();
    cancelled.change = Change::ReservationCancelled {
        reservation_id: s.reservation_id,
    };
    let a = apply(Some(apply(None, &confirmed)), &cancelled);
    let b = apply(Some(apply(None, &cancelled)), &confirmed);
    assert_eq!(a, b);
}

#[test]
fn check_refuses_an_event_of_another_customer() {
    let s = story(0);
    let entry = apply(None, &s.events[0]);
    let mut foreign = s.events[1].clone();
    foreign.customer_id = id("someone-else");
    assert!(matches!(
        check(&entry, &foreign),
        Err(Conflict::Customer { .. })
    ));
    assert_eq!(check(&entry, &s.events[1]), Ok(()));
}

#[test]
fn check_refuses_a_second_payment_or_reservation() {
    let s = story(0);
    let entry = fold(&s.events).expect("a story has events");
    let mut other_payment = s.events[2].clone();
    other_payment.change = Change::OrderPaid {
        payment_id: Uuid::now_v7(),
    };
    assert!(matches!(
        check(&entry, &other_payment),
        Err(Conflict::Payment { .. })
    ));
    let mut other_reservation = s.events[4].clone();
    other_reservation.change = Change::ReservationConfirmed {
        reservation_id: Uuid::now_v7(),
    };
    assert!(matches!(
        check(&entry, &other_reservation),
        Err(Conflict::Reservation { .. })
    ));
}

#[test]
fn every_story_passes_its_own_checks_in_any_order() {
    for s in stories() {
        for (i, a) in s.events.iter().enumerate() {
            for b in &s.events[i..] {
                let entry = apply(None, a);
                assert_eq!(check(&entry, b), Ok(()), "{a:?} then {b:?}");
                let entry = apply(None, b);
                assert_eq!(check(&entry, a), Ok(()), "{b:?} then {a:?}");
            }
        }
    }
}

/// A story cut after any event (the rest has not happened yet), and the same events
/// as delivered: shuffled, some of them several times.
fn deliveries() -> impl Strategy<Value = (Vec<DomainEvent>, Vec<DomainEvent>)> {
    let count = stories().len();
    (0..count, any::<prop::sample::Index>())
        .prop_flat_map(|(n, cut)| {
            let all = story(n).events;
            let events = all[..=cut.index(all.len())].to_vec();
            let len = events.len();
            (Just(events), prop::collection::vec(0..len, 0..=2 * len))
        })
        .prop_flat_map(|(events, repeats)| {
            let mut delivered = events.clone();
            delivered.extend(repeats.into_iter().map(|i| events[i].clone()));
            (Just(events), Just(delivered).prop_shuffle())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_delivery_order_with_repeats_converges_to_the_in_order_entry(
        (in_order, delivered) in deliveries()
    ) {
        let expected = fold(&in_order);
        let got = fold(&delivered);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn statuses_never_move_back_while_events_arrive(
        (_, delivered) in deliveries()
    ) {
        let mut row: Option<Entry> = None;
        for e in &delivered {
            let next = apply(row.clone(), e);
            if let Some(prev) = &row {
                prop_assert!(next.order >= prev.order);
                prop_assert!(next.payment >= prev.payment);
                prop_assert!(next.reservation >= prev.reservation);
                prop_assert!(next.updated_at >= prev.updated_at);
            }
            row = Some(next);
        }
    }
}

#[test]
fn whole_stories_end_in_the_expected_statuses() {
    use OrderStatus as O;
    use PaymentStatus as P;
    use ReservationStatus as R;
    let expected = [
        (Some(O::Paid), Some(P::Approved), Some(R::Confirmed)),
        (Some(O::PaymentDeclined), Some(P::Declined), None),
        (Some(O::Cancelled), Some(P::Refunded), Some(R::Cancelled)),
        (Some(O::Rejected), Some(P::Refunded), Some(R::Rejected)),
        (Some(O::Cancelled), Some(P::Refunded), Some(R::Cancelled)),
        (Some(O::Cancelled), Some(P::Refunded), None),
        (Some(O::Cancelled), Some(P::Refunded), None),
        (Some(O::Cancelled), None, None),
    ];
    for (n, (s, want)) in stories().into_iter().zip(expected).enumerate() {
        let entry = fold(&s.events).expect("a story has events");
        let got = (
            entry.order.map(|v| v.status),
            entry.payment.map(|v| v.status),
            entry.reservation.map(|v| v.status),
        );
        assert_eq!(got, want, "story {n}");
        let last = s.events.last().expect("a story has events");
        assert_eq!(entry.updated_at, last.occurred_at, "story {n}");
    }
}
