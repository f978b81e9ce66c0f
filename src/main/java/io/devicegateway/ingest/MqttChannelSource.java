package io.devicegateway.ingest;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Flow;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BiConsumer;
import java.util.function.Consumer;

import org.eclipse.microprofile.reactive.messaging.Message;
import org.jboss.logging.Logger;

import io.devicegateway.platform.mqtt.InboundMessage;

/**
 * The {@code device-gateway-mqtt} channel's publisher: one subscriber, emission serialised, demand honoured. The MQTT
 * event loop emits directly while the demand is unbounded (what the {@code device-gateway-kafka} sink asks for) and
 * nothing waits; otherwise messages wait in order in a backlog that whoever adds demand or a message drains. Waiting
 * messages are already counted in flight, so the in-flight bound (reads paused) bounds the backlog too.
 */
final class MqttChannelSource implements Flow.Publisher<Message<?>>, Flow.Subscription {

    private static final Logger LOG = Logger.getLogger(MqttChannelSource.class);

    private final String channel;
    private final List<String> filters;
    /** A message given up without a PUBACK (the channel is gone): the broker redelivers it after a reconnect. */
    private final Consumer<InboundMessage> giveUp;
    /** A message the subscriber threw on: it gets the nack's defined end. */
    private final BiConsumer<InboundMessage, Throwable> failed;
    private volatile Flow.Subscriber<? super Message<?>> subscriber;
    private final AtomicLong requested = new AtomicLong();
    /** Sticky once the demand reached Long.MAX_VALUE. */
    private volatile boolean unbounded;
    /** True while the backlog holds messages or is being drained; the direct path is then closed. */
    private volatile boolean backlogged;
    private volatile boolean cancelled;
    private final ArrayDeque<DeviceChannelMessage<?>> backlog = new ArrayDeque<>(); // guarded by this
    private boolean draining; // guarded by this

    MqttChannelSource(String channel, List<String> filters, Consumer<InboundMessage> giveUp,
            BiConsumer<InboundMessage, Throwable> failed) {
        this.channel = channel;
        this.filters = filters;
        this.giveUp = giveUp;
        this.failed = failed;
    }

    String channel() {
        return channel;
    }

    List<String> filters() {
        return filters;
    }

    boolean cancelled() {
        return cancelled;
    }

    @Override
    public void subscribe(Flow.Subscriber<? super Message<?>> s) {
        synchronized (this) {
            if (subscriber == null) {
                subscriber = s;
                s.onSubscribe(this);
                return;
            }
        }
        s.onSubscribe(new Flow.Subscription() {
            @Override
            public void request(long n) {
            }

            @Override
            public void cancel() {
            }
        });
        s.onError(new IllegalStateException("channel " + channel + " has a subscriber already"));
    }

    /** From the MQTT connection's event loop (one thread: the fast path relies on it). */
    void emit(DeviceChannelMessage<?> message) {
        if (cancelled) {
            giveUp.accept(message.source);
            return;
        }
        if (unbounded && !backlogged) {
            deliver(message);
            return;
        }
        synchronized (this) {
            backlog.add(message);
            backlogged = true;
        }
        drain();
    }

    @Override
    public void request(long n) {
        if (n <= 0) {
            cancel();
            subscriber.onError(new IllegalArgumentException("Reactive Streams rule 3.9: request(" + n + ")"));
            return;
        }
        long now = requested.accumulateAndGet(n, (a, b) -> a + b < 0 ? Long.MAX_VALUE : a + b);
        if (now == Long.MAX_VALUE) {
            unbounded = true;
        }
        if (backlogged) {
            drain();
        }
    }

    @Override
    public void cancel() {
        if (cancelled) {
            return;
        }
        cancelled = true;
        LOG.infof("Channel %s cancelled; messages not yet settled are left to the broker for redelivery", channel);
        List<DeviceChannelMessage<?>> left;
        synchronized (this) {
            left = new ArrayList<>(backlog);
            backlog.clear();
        }
        for (DeviceChannelMessage<?> m : left) {
            giveUp.accept(m.source);
        }
    }

    /** Emits what the demand allows; one drainer at a time, the others leave their work to it. */
    private void drain() {
        synchronized (this) {
            if (draining) {
                return;
            }
            draining = true;
        }
        while (true) {
            DeviceChannelMessage<?> next;
            synchronized (this) {
                if (cancelled || backlog.isEmpty() || (!unbounded && requested.get() == 0)) {
                    if (backlog.isEmpty()) {
                        backlogged = false; // only now, after the last onNext returned: order is kept
                    }
                    draining = false;
                    return;
                }
                next = backlog.poll();
                if (!unbounded) {
                    requested.decrementAndGet();
                }
            }
            deliver(next);
        }
    }

    private void deliver(DeviceChannelMessage<?> message) {
        try {
            subscriber.onNext(message);
        } catch (RuntimeException e) {
            // a Reactive Streams subscriber must not throw; if one does, this message still gets a defined end
            failed.accept(message.source, e);
        }
    }
}
