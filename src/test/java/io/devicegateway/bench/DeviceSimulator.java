package io.devicegateway.bench;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt3.Mqtt3AsyncClient;
import com.hivemq.client.mqtt.mqtt5.Mqtt5AsyncClient;

/**
 * N simulated devices, one MQTT connection each, publishing numbered messages either as fast as the broker
 * takes them or at a fixed total rate. Each device's messages carry its own sequence 0, 1, 2, ...
 */
public final class DeviceSimulator implements AutoCloseable {

    /** Publishes not yet acknowledged by the broker (QoS 1) per device: keeps the client's queue bounded. */
    private static final int WINDOW = 1000;

    private final List<Mqtt3AsyncClient> clients = new ArrayList<>();
    /** Numbered devices (MQTT 5, user properties seq and seq-epoch): one per device, used instead of clients. */
    private final List<Mqtt5AsyncClient> numbered = new ArrayList<>();
    private final long epoch;
    private final List<String> deviceIds = new ArrayList<>();
    private final String topicPattern;
    private final AtomicLong failures = new AtomicLong();
    /** Sequence numbers the broker acknowledged (PUBACK to the device), per device: what must not be lost. */
    private final java.util.Map<String, java.util.BitSet> acked = new java.util.concurrent.ConcurrentHashMap<>();
    private final AtomicLong ackedCount = new AtomicLong();
    private final AtomicLong published = new AtomicLong();
    private volatile java.util.function.LongSupplier delivered;
    private volatile long endToEndWindow;
    /** Nanoseconds without a delivery, window full, after which what is outstanding counts as lost; 0 = never. */
    private volatile long writeOffNanos;
    /** Messages the window stopped waiting for (written off as lost by the broker). */
    private final java.util.concurrent.atomic.AtomicLong writtenOff = new java.util.concurrent.atomic.AtomicLong();

    /**
     * @param topicPattern topic with {@code %s} for the device id, e.g. {@code devices/%s/telemetry}
     */
    public DeviceSimulator(String host, int port, String runId, int devices, String topicPattern) {
        this(host, port, runId, devices, topicPattern, false);
    }

    /**
     * @param numbered MQTT 5 devices that number their messages: user property {@code seq} = the message's sequence
     *                 (also in its payload) and {@code seq-epoch} = a per-simulator epoch, for duplicate removal
     */
    public DeviceSimulator(String host, int port, String runId, int devices, String topicPattern, boolean numbered) {
        this.topicPattern = topicPattern;
        this.epoch = System.currentTimeMillis();
        for (int d = 0; d < devices; d++) {
            String id = runId + "-d" + d;
            if (numbered) {
                Mqtt5AsyncClient client = MqttClient.builder().useMqttVersion5().identifier("sim-" + id)
                        .serverHost(host).serverPort(port).buildAsync();
                client.connect().join();
                this.numbered.add(client);
                clients.add(null);
            } else {
                Mqtt3AsyncClient client = MqttClient.builder().useMqttVersion3().identifier("sim-" + id)
                        .serverHost(host).serverPort(port).buildAsync();
                client.connect().join();
                clients.add(client);
            }
            deviceIds.add(id);
        }
    }

    /**
     * Closed loop: all devices together keep at most {@code window} messages published but not yet {@code delivered}
     * (counted where they end up: the subscriber or Kafka). A stock Mosquitto never pushes back on publishers: it
     * acknowledges every QoS 1 publish and drops what no longer fits a subscriber's queue (max_queued_messages,
     * default 1000; Debian's 2.0.11 also caps each client's unsent packets at it), so an unthrottled flood mostly
     * measures the broker's drops. With a window the rate is what the path sustains (drops then are about one window's
     * worth per run on 2.0.11, reported separately).
     */
    public DeviceSimulator endToEndWindow(java.util.function.LongSupplier delivered, long window) {
        this.delivered = delivered;
        this.endToEndWindow = window;
        return this;
    }

    /**
     * For a sink that cannot recover what the broker drops (the plain subscriber): when the window has been full with
     * no delivery for {@code after}, the outstanding messages stop counting against it (a drop then costs one pause
     * instead of shrinking the window for the rest of the run). The missing messages are still counted as missing.
     */
    public DeviceSimulator writeOffLostAfter(java.time.Duration after) {
        this.writeOffNanos = after.toNanos();
        return this;
    }

    public long writtenOff() {
        return writtenOff.get();
    }

    public List<String> deviceIds() {
        return deviceIds;
    }

    public long failures() {
        return failures.get();
    }

    /**
     * Sends {@code perDevice} messages from every device, all devices in parallel; at {@code ratePerSecond}
     * in total when it is positive, else as fast as possible. Returns when the broker has taken them all.
     */
    public void run(long perDevice, int size, int qos, int ratePerSecond) {
        List<Thread> threads = new ArrayList<>();
        double perDeviceRate = ratePerSecond > 0 ? (double) ratePerSecond / clients.size() : 0;
        for (int d = 0; d < clients.size(); d++) {
            Mqtt3AsyncClient client = clients.get(d);
            Mqtt5AsyncClient client5 = numbered.isEmpty() ? null : numbered.get(d);
            String topic = String.format(topicPattern, deviceIds.get(d));
            String device = deviceIds.get(d);
            Thread t = new Thread(() -> publish(client, client5, device, topic, perDevice, size, qos, perDeviceRate),
                    "sim-" + d);
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** Messages the broker acknowledged so far (QoS 1; QoS 0 counts what was written). */
    public long acknowledged() {
        return ackedCount.get();
    }

    /** The acknowledged sequence numbers of one device. */
    public java.util.BitSet acknowledged(String deviceId) {
        java.util.BitSet bits = acked.get(deviceId);
        synchronized (bits) {
            return (java.util.BitSet) bits.clone();
        }
    }

    /**
     * Reads {@code telemetry} until every message the broker acknowledged to these devices is there (sequence = the
     * payload's first 8 bytes, inside the envelope), at most {@code timeout}; returns how many are still missing.
     */
    public long missingIn(io.devicegateway.testing.KafkaRecords telemetry, java.time.Duration timeout) {
        java.util.Map<String, java.util.BitSet> received = new java.util.HashMap<>();
        long deadline = System.nanoTime() + timeout.toNanos();
        long missing;
        do {
            for (var r : telemetry.poll(java.time.Duration.ofMillis(200))) {
                if (deviceIds().contains(r.key())) {
                    try {
                        long seq = java.nio.ByteBuffer.wrap(io.devicegateway.v1.DeviceMessage.parseFrom(r.value())
                                .getPayload().toByteArray()).getLong(0);
                        received.computeIfAbsent(r.key(), k -> new java.util.BitSet()).set((int) seq);
                    } catch (com.google.protobuf.InvalidProtocolBufferException e) {
                        throw new IllegalStateException(e);
                    }
                }
            }
            missing = 0;
            for (String id : deviceIds()) {
                java.util.BitSet acked = acknowledged(id);
                acked.andNot(received.getOrDefault(id, new java.util.BitSet()));
                missing += acked.cardinality();
            }
        } while (missing > 0 && System.nanoTime() < deadline);
        return missing;
    }

    private void publish(Mqtt3AsyncClient client, Mqtt5AsyncClient client5, String device, String topic, long count,
            int size, int qos, double rate) {
        String epochText = Long.toString(epoch);
        java.util.BitSet mine = acked.computeIfAbsent(device, k -> new java.util.BitSet());
        Semaphore window = new Semaphore(WINDOW);
        MqttQos mqttQos = MqttQos.fromCode(qos);
        long start = System.nanoTime();
        for (long seq = 0; seq < count; seq++) {
            if (rate > 0) {
                long due = start + (long) (seq * 1_000_000_000L / rate);
                long wait = due - System.nanoTime();
                if (wait > 0) {
                    java.util.concurrent.locks.LockSupport.parkNanos(wait); // pacing the load, not synchronising a test
                }
            }
            try {
                if (!window.tryAcquire(30, TimeUnit.SECONDS)) {
                    failures.incrementAndGet();
                    return;
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            if (!awaitEndToEndWindow()) {
                failures.incrementAndGet();
                return;
            }
            published.incrementAndGet();
            long sequence = seq;
            java.util.concurrent.CompletableFuture<?> sent = client5 != null
                    ? client5.publishWith().topic(topic).qos(mqttQos).payload(Payloads.make(seq, size))
                            .userProperties().add("seq", Long.toString(seq)).add("seq-epoch", epochText)
                            .applyUserProperties().send()
                    : client.publishWith().topic(topic).qos(mqttQos).payload(Payloads.make(seq, size)).send();
            sent.whenComplete((ok, error) -> {
                        window.release();
                        if (error != null) {
                            failures.incrementAndGet();
                        } else {
                            synchronized (mine) {
                                mine.set((int) sequence);
                            }
                            ackedCount.incrementAndGet();
                        }
                    });
        }
        try {
            window.tryAcquire(WINDOW, 60, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** False when nothing was delivered for 30 s while the window was full. */
    private boolean awaitEndToEndWindow() {
        java.util.function.LongSupplier out = delivered;
        long window = endToEndWindow;
        if (out == null || window <= 0) {
            return true;
        }
        long waitingSince = 0;
        long lastDelivered = -1;
        while (published.get() - out.getAsLong() - writtenOff.get() >= window) {
            long now = System.nanoTime();
            long d = out.getAsLong();
            if (d != lastDelivered) {
                lastDelivered = d;
                waitingSince = now;
            } else if (writeOffNanos > 0 && now - waitingSince > writeOffNanos) {
                synchronized (writtenOff) { // one thread writes off what all of them wait for
                    long outstanding = published.get() - out.getAsLong() - writtenOff.get();
                    if (outstanding >= window && out.getAsLong() == d) {
                        writtenOff.addAndGet(outstanding);
                    }
                }
                waitingSince = now;
            } else if (now - waitingSince > 30_000_000_000L) {
                return false;
            }
            java.util.concurrent.locks.LockSupport.parkNanos(50_000); // pacing the load, not synchronising a test
        }
        return true;
    }

    @Override
    public void close() {
        for (Mqtt3AsyncClient c : clients) {
            try {
                if (c != null) {
                    c.disconnect().get(5, TimeUnit.SECONDS);
                }
            } catch (Exception ignored) {
                // best effort
            }
        }
        for (Mqtt5AsyncClient c : numbered) {
            try {
                c.disconnect().get(5, TimeUnit.SECONDS);
            } catch (Exception ignored) {
                // best effort
            }
        }
    }
}
