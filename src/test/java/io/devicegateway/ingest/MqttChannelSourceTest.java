package io.devicegateway.ingest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.Flow;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.awaitility.Awaitility;
import org.eclipse.microprofile.reactive.messaging.Message;
import org.junit.jupiter.api.Test;

import io.devicegateway.platform.mqtt.InboundMessage;

/** The inbound channel's publisher: order, demand, one subscriber, cancellation (Reactive Streams rules). */
class MqttChannelSourceTest {

    private final AtomicInteger givenUp = new AtomicInteger();
    private final List<Throwable> failures = Collections.synchronizedList(new ArrayList<>());
    private final MqttChannelSource source = new MqttChannelSource("test", List.of("#"),
            (InboundMessage m) -> givenUp.incrementAndGet(), (m, e) -> failures.add(e));

    /** Records payloads; fails the test on overlapping onNext calls. */
    static final class Recorder implements Flow.Subscriber<Message<?>> {
        final List<Object> received = Collections.synchronizedList(new ArrayList<>());
        final AtomicInteger inside = new AtomicInteger();
        final AtomicReference<Throwable> error = new AtomicReference<>();
        volatile boolean overlapped;
        volatile Flow.Subscription subscription;

        @Override
        public void onSubscribe(Flow.Subscription s) {
            subscription = s;
        }

        @Override
        public void onNext(Message<?> item) {
            if (inside.incrementAndGet() != 1) {
                overlapped = true;
            }
            received.add(item.getPayload());
            inside.decrementAndGet();
        }

        @Override
        public void onError(Throwable t) {
            error.set(t);
        }

        @Override
        public void onComplete() {
        }
    }

    private void emit(Object payload) {
        source.emit(new DeviceChannelMessage<>(null, payload, null));
    }

    @Test
    void emitsInArrivalOrderAsTheDemandAllows() {
        Recorder r = new Recorder();
        source.subscribe(r);
        r.subscription.request(2);
        for (int i = 0; i < 5; i++) {
            emit(i);
        }
        assertEquals(List.of(0, 1), r.received);
        r.subscription.request(2);
        assertEquals(List.of(0, 1, 2, 3), r.received);
        r.subscription.request(Long.MAX_VALUE);
        assertEquals(List.of(0, 1, 2, 3, 4), r.received);
        emit(5); // unbounded and nothing waiting: straight through
        assertEquals(List.of(0, 1, 2, 3, 4, 5), r.received);
    }

    @Test
    void messagesBeforeTheFirstRequestWaitAndFollowInOrder() {
        emit("a");
        emit("b");
        Recorder r = new Recorder();
        source.subscribe(r);
        assertTrue(r.received.isEmpty());
        r.subscription.request(Long.MAX_VALUE);
        emit("c");
        assertEquals(List.of("a", "b", "c"), r.received);
    }

    @Test
    void requestsFromAnotherThreadNeverOverlapDeliveriesOrReorderThem() throws Exception {
        Recorder r = new Recorder();
        source.subscribe(r);
        int n = 20_000;
        Thread requester = new Thread(() -> {
            for (int i = 0; i < n; i++) {
                r.subscription.request(1);
            }
        });
        requester.start();
        for (int i = 0; i < n; i++) {
            emit(i);
        }
        requester.join();
        Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> r.received.size() == n);
        assertTrue(!r.overlapped, "onNext calls overlapped");
        for (int i = 0; i < n; i++) {
            assertEquals(i, r.received.get(i));
        }
    }

    @Test
    void givesUpWhatWaitsAndWhatArrivesOnceCancelled() {
        Recorder r = new Recorder();
        source.subscribe(r);
        emit(1);
        emit(2);
        r.subscription.cancel();
        assertEquals(2, givenUp.get());
        emit(3);
        assertEquals(3, givenUp.get());
        assertTrue(r.received.isEmpty());
        assertTrue(source.cancelled());
    }

    @Test
    void refusesASecondSubscriberAndANonPositiveRequest() {
        Recorder first = new Recorder();
        source.subscribe(first);
        Recorder second = new Recorder();
        source.subscribe(second);
        assertInstanceOf(IllegalStateException.class, second.error.get());
        first.subscription.request(0);
        assertInstanceOf(IllegalArgumentException.class, first.error.get());
        assertTrue(source.cancelled());
    }

    @Test
    void aThrowingSubscriberFailsOnlyThatMessage() {
        List<Object> got = new ArrayList<>();
        source.subscribe(new Flow.Subscriber<Message<?>>() {
            @Override
            public void onSubscribe(Flow.Subscription s) {
                s.request(Long.MAX_VALUE);
            }

            @Override
            public void onNext(Message<?> item) {
                if ("bad".equals(item.getPayload())) {
                    throw new IllegalStateException("test");
                }
                got.add(item.getPayload());
            }

            @Override
            public void onError(Throwable t) {
            }

            @Override
            public void onComplete() {
            }
        });
        emit("ok-1");
        emit("bad");
        emit("ok-2");
        assertEquals(List.of("ok-1", "ok-2"), got);
        assertEquals(1, failures.size());
    }
}
