package io.devicegateway.platform.mqtt;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.function.BiConsumer;

import io.netty.handler.codec.mqtt.MqttProperties;
import io.vertx.core.buffer.Buffer;

/**
 * An MQTT PUBLISH received by the gateway. The broker considers a QoS 1 message delivered only after
 * {@link #ack()}; until then it keeps it and redelivers it to this session after a reconnect.
 */
public final class InboundMessage {

    private final MqttLink link;
    private final String topic;
    private final byte[] payload;
    private final int qos;
    private final int packetId;
    private final boolean duplicate;
    private final boolean retained;
    private final MqttProperties properties;
    private final long receivedAtNanos = System.nanoTime();
    private final long receivedAtMillis = System.currentTimeMillis();
    /** 0 until {@link #settle()} first succeeds (a field updater: no allocation per message). */
    private volatile int settled;
    private static final java.util.concurrent.atomic.AtomicIntegerFieldUpdater<InboundMessage> SETTLED =
            java.util.concurrent.atomic.AtomicIntegerFieldUpdater.newUpdater(InboundMessage.class, "settled");

    InboundMessage(MqttLink link, String topic, byte[] payload, int qos, int packetId, boolean duplicate,
            boolean retained, MqttProperties properties) {
        this.link = link;
        this.topic = topic;
        this.payload = payload;
        this.qos = qos;
        this.packetId = packetId;
        this.duplicate = duplicate;
        this.retained = retained;
        this.properties = properties;
    }

    public String topic() {
        return topic;
    }

    public Buffer payload() {
        return Buffer.buffer(payload);
    }

    /** The payload bytes as received; not copied, do not modify. */
    public byte[] payloadBytes() {
        return payload;
    }

    public int qos() {
        return qos;
    }

    public boolean duplicate() {
        return duplicate;
    }

    public boolean retained() {
        return retained;
    }

    public long receivedAtNanos() {
        return receivedAtNanos;
    }

    public long receivedAtMillis() {
        return receivedAtMillis;
    }

    /** The client id of the session it arrived on (the gateway's own, or an adopted one). */
    public String sessionClientId() {
        return link.clientId();
    }

    /** MQTT 5 Content Type, or null. */
    public String contentType() {
        return stringProperty(MqttProperties.MqttPropertyType.CONTENT_TYPE);
    }

    /** MQTT 5 Response Topic, or null. */
    public String responseTopic() {
        return stringProperty(MqttProperties.MqttPropertyType.RESPONSE_TOPIC);
    }

    /** MQTT 5 Correlation Data, or null. */
    public byte[] correlationData() {
        MqttProperties.MqttProperty<?> p = properties.getProperty(MqttProperties.MqttPropertyType.CORRELATION_DATA.value());
        return p != null && p.value() instanceof byte[] b ? b : null;
    }

    /** MQTT 5 Payload Format Indicator: true when the sender declared the payload UTF-8 text. */
    public boolean payloadUtf8() {
        MqttProperties.MqttProperty<?> p = properties.getProperty(
                MqttProperties.MqttPropertyType.PAYLOAD_FORMAT_INDICATOR.value());
        return p != null && p.value() instanceof Integer i && i == 1;
    }

    /** Every MQTT 5 user property, in the order sent (names may repeat). */
    public void forEachUserProperty(BiConsumer<String, String> action) {
        MqttProperties.MqttProperty<?> p = properties.getProperty(MqttProperties.MqttPropertyType.USER_PROPERTY.value());
        if (p != null && p.value() instanceof List<?> pairs) {
            for (Object o : pairs) {
                if (o instanceof MqttProperties.StringPair pair) {
                    action.accept(pair.key, pair.value);
                }
            }
        }
    }

    /** The first user property with this name, or null. */
    public String userProperty(String name) {
        String[] found = new String[1];
        forEachUserProperty((k, v) -> {
            if (found[0] == null && k.equals(name)) {
                found[0] = v;
            }
        });
        return found[0];
    }

    private String stringProperty(MqttProperties.MqttPropertyType type) {
        MqttProperties.MqttProperty<?> p = properties.getProperty(type.value());
        return p != null && p.value() instanceof String s ? s : null;
    }

    /** Correlation data as text (what the gateway sends), or null. */
    public String correlationText() {
        byte[] data = correlationData();
        return data == null ? null : new String(data, StandardCharsets.UTF_8);
    }

    /**
     * Sends the PUBACK (QoS 1); call once, from any thread. The ack goes out on the connection that received the
     * message: if that connection is gone, the broker redelivers the message on the next one instead, so an ack
     * can never land on a different message that happens to reuse the packet id.
     */
    public void ack() {
        link.ack(packetId, qos);
    }

    /**
     * True exactly once: for the one owner that finishes this message (acknowledges it, or gives it up for
     * redelivery). Guards the PUBACK and the in-flight count against a second ack or nack of the same message.
     */
    public boolean settle() {
        return SETTLED.compareAndSet(this, 0, 1);
    }

    /** Whether {@link #settle()} has succeeded. */
    public boolean settled() {
        return settled != 0;
    }
}
