package io.devicegateway.bench;

import java.nio.ByteBuffer;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.datatypes.MqttTopic;
import com.hivemq.client.mqtt.mqtt3.Mqtt3AsyncClient;
import com.hivemq.client.mqtt.mqtt5.Mqtt5AsyncClient;

/**
 * The broker's own limit: one plain subscriber, acknowledging every QoS 1 message on receipt. What it receives per
 * second is the ceiling the gateway is measured against. It speaks MQTT 5 like the gateway (HiveMQ client, clean
 * start, Receive Maximum 60000: the gateway's default window). Note: the
 * client's default (65535) is not sent on the wire, and Mosquitto 2.0 then gives the client its
 * {@code max_inflight_messages} window (default 20), exactly as for a 3.1.1 client (measured on 2.0.11: 20
 * unacknowledged messages delivered with the default, 5000 of 5000 with 65534). With 20 it falls behind, the broker
 * drops from its queue and the closed-loop window stalls on what it lost.
 * {@code -Dbench.raw.receive-maximum=N} sends another Receive Maximum;
 * {@code -Dbench.raw.protocol=3.1.1} makes it a 3.1.1 subscriber; {@code -Dbench.raw.ack-delay-ms=N} (diagnostic)
 * acknowledges each message 1..N ms late and out of order, the way Kafka completions would.
 */
final class RawSubscriber implements AutoCloseable {

    final Tally tally = new Tally();
    final String protocol = System.getProperty("bench.raw.protocol", "5");
    private final long ackDelay = Long.getLong("bench.raw.ack-delay-ms", 0);
    private final ScheduledExecutorService delayedAcks = ackDelay > 0
            ? Executors.newSingleThreadScheduledExecutor(r -> new Thread(r, "raw-delayed-acks")) : null;
    private final Mqtt5AsyncClient v5;
    private final Mqtt3AsyncClient v3;

    RawSubscriber(String host, int port, String filter, String runId) {
        boolean manual = ackDelay > 0;
        if (protocol.equals("3.1.1")) {
            v5 = null;
            v3 = MqttClient.builder().useMqttVersion3().identifier("raw-" + runId).serverHost(host).serverPort(port)
                    .buildAsync();
            v3.connectWith().cleanSession(true).send().join();
            v3.subscribeWith().topicFilter(filter).qos(MqttQos.AT_LEAST_ONCE)
                    .callback(p -> received(p.getTopic(), p.getPayload().orElse(null), p::acknowledge))
                    .manualAcknowledgement(manual)
                    .send().orTimeout(10, TimeUnit.SECONDS).join();
        } else if (protocol.equals("5")) {
            v3 = null;
            v5 = MqttClient.builder().useMqttVersion5().identifier("raw-" + runId).serverHost(host).serverPort(port)
                    .buildAsync();
            // the gateway's default window (Receive Maximum 60000, sent on the wire); the HiveMQ client does not send
            // its own default 65535, and Mosquitto would then use its max_inflight_messages (20)
            int receiveMaximum = Integer.getInteger("bench.raw.receive-maximum", 60_000);
            var connect = v5.connectWith().cleanStart(true);
            if (receiveMaximum > 0) {
                connect = connect.restrictions().receiveMaximum(receiveMaximum).applyRestrictions();
            }
            connect.send().join();
            v5.subscribeWith().topicFilter(filter).qos(MqttQos.AT_LEAST_ONCE)
                    .callback(p -> received(p.getTopic(), p.getPayload().orElse(null), p::acknowledge))
                    .manualAcknowledgement(manual)
                    .send().orTimeout(10, TimeUnit.SECONDS).join();
        } else {
            throw new IllegalArgumentException("bench.raw.protocol must be 5 or 3.1.1, not " + protocol);
        }
    }

    /** On the client's event loop: count it, and (only with the ack delay) acknowledge it later. */
    private void received(MqttTopic topic, ByteBuffer payload, Runnable ack) {
        if (delayedAcks != null) {
            long delay = 1 + ThreadLocalRandom.current().nextLong(ackDelay);
            delayedAcks.schedule(ack, delay, TimeUnit.MILLISECONDS);
        }
        String t = topic.toString();
        int start = t.indexOf('/') + 1;
        // slice: absolute reads in Payloads start at the payload's first byte whatever the buffer's position
        if (payload != null) {
            tally.record(t.substring(start, t.indexOf('/', start)), payload.slice());
        }
    }

    @Override
    public void close() {
        try {
            if (v5 != null) {
                v5.disconnect().orTimeout(5, TimeUnit.SECONDS).join();
            } else {
                v3.disconnect().orTimeout(5, TimeUnit.SECONDS).join();
            }
        } finally {
            if (delayedAcks != null) {
                delayedAcks.shutdownNow();
            }
        }
    }
}
