package io.devicegateway.platform.mqtt;

import io.vertx.core.buffer.Buffer;
import io.vertx.mqtt.messages.MqttPublishMessage;

/**
 * An MQTT PUBLISH received by the gateway. The broker considers a QoS 1 message delivered only after
 * {@link #ack()}; until then it keeps it and redelivers it to this client id after a reconnect.
 */
public final class InboundMessage {

    private final MqttPublishMessage publish;
    private final PubAckQueue acks;
    private final long receivedAtNanos = System.nanoTime();
    private final long receivedAtMillis = System.currentTimeMillis();

    InboundMessage(MqttPublishMessage publish, PubAckQueue acks) {
        this.publish = publish;
        this.acks = acks;
    }

    public String topic() {
        return publish.topicName();
    }

    public Buffer payload() {
        return publish.payload();
    }

    public int qos() {
        return publish.qosLevel().value();
    }

    public boolean duplicate() {
        return publish.isDup();
    }

    public boolean retained() {
        return publish.isRetain();
    }

    public long receivedAtNanos() {
        return receivedAtNanos;
    }

    public long receivedAtMillis() {
        return receivedAtMillis;
    }

    /**
     * Sends the PUBACK (QoS 1); call once, from any thread. The ack goes out on the connection that received the
     * message: if that connection is gone, the broker redelivers the message on the next one instead, so an ack
     * can never land on a different message that happens to reuse the packet id.
     */
    public void ack() {
        if (publish.qosLevel().value() > 0) {
            acks.add(publish);
        }
    }
}
