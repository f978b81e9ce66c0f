package io.devicegateway.function;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;

/**
 * What a {@link DeviceFunction} sees of one device message, as the functions before it left it. Immutable: the
 * payload is handed out as read-only buffers, the user properties as an unmodifiable list.
 */
public final class DeviceMessageView {

    private final String deviceId;
    private final DeviceFunction.Kind kind;
    private final String stream;
    private final ByteBuffer payload;
    private final String contentType;
    private final boolean hasSequence;
    private final long sequence;
    private final long sequenceEpoch;
    private final List<Map.Entry<String, String>> userProperties;
    private final long receivedAtMillis;
    private final String mqttTopic;

    private DeviceMessageView(Builder b) {
        this.deviceId = b.deviceId;
        this.kind = b.kind;
        this.stream = b.stream;
        this.payload = b.payload.slice().asReadOnlyBuffer(); // position 0 whatever the source buffer's
        this.contentType = b.contentType;
        this.hasSequence = b.hasSequence;
        this.sequence = b.sequence;
        this.sequenceEpoch = b.sequenceEpoch;
        this.userProperties = b.userProperties;
        this.receivedAtMillis = b.receivedAtMillis;
        this.mqttTopic = b.mqttTopic;
    }

    /** The device id from the topic. */
    public String deviceId() {
        return deviceId;
    }

    public DeviceFunction.Kind kind() {
        return kind;
    }

    /** The topic levels after {@code telemetry/} or {@code events/} ("" when there are none). */
    public String stream() {
        return stream;
    }

    /** The payload as a new read-only, big-endian buffer positioned at 0 (each call its own position). */
    public ByteBuffer payload() {
        return payload.duplicate();
    }

    public int payloadSize() {
        return payload.remaining();
    }

    /** A copy of the payload bytes. */
    public byte[] payloadBytes() {
        byte[] copy = new byte[payload.remaining()];
        payload.duplicate().get(copy);
        return copy;
    }

    /** MQTT 5 Content Type or one set by an earlier function; "" when none. */
    public String contentType() {
        return contentType;
    }

    /** Whether the message has a sequence number (user property {@code seq}, or set by an earlier function). */
    public boolean hasSequence() {
        return hasSequence;
    }

    /** The sequence number (unsigned 64-bit); meaningful only when {@link #hasSequence()}. */
    public long sequence() {
        return sequence;
    }

    /** The sequence epoch (unsigned 64-bit; 0 when not given). */
    public long sequenceEpoch() {
        return sequenceEpoch;
    }

    /** The device's MQTT 5 user properties in the order sent (names may repeat); empty for MQTT 3.1.1. */
    public List<Map.Entry<String, String>> userProperties() {
        return userProperties;
    }

    /** The first user property with this name, or null. */
    public String userProperty(String name) {
        for (Map.Entry<String, String> e : userProperties) {
            if (e.getKey().equals(name)) {
                return e.getValue();
            }
        }
        return null;
    }

    /** When the gateway received it (wall clock, ms). */
    public long receivedAtMillis() {
        return receivedAtMillis;
    }

    /** The MQTT topic it was published on. */
    public String mqttTopic() {
        return mqttTopic;
    }

    /** For the gateway and for tests of a function. */
    public static Builder builder(String deviceId, DeviceFunction.Kind kind, String stream, ByteBuffer payload) {
        return new Builder(deviceId, kind, stream, payload);
    }

    public static Builder builder(String deviceId, DeviceFunction.Kind kind, String stream, byte[] payload) {
        return new Builder(deviceId, kind, stream, ByteBuffer.wrap(payload));
    }

    public static final class Builder {
        private final String deviceId;
        private final DeviceFunction.Kind kind;
        private final String stream;
        private final ByteBuffer payload;
        private String contentType = "";
        private boolean hasSequence;
        private long sequence;
        private long sequenceEpoch;
        private List<Map.Entry<String, String>> userProperties = List.of();
        private long receivedAtMillis;
        private String mqttTopic;

        private Builder(String deviceId, DeviceFunction.Kind kind, String stream, ByteBuffer payload) {
            this.deviceId = deviceId;
            this.kind = kind;
            this.stream = stream == null ? "" : stream;
            this.payload = payload;
            this.mqttTopic = "devices/" + deviceId + "/" + (kind == DeviceFunction.Kind.TELEMETRY ? "telemetry" : "events")
                    + (this.stream.isEmpty() ? "" : "/" + this.stream);
        }

        public Builder contentType(String value) {
            this.contentType = value == null ? "" : value;
            return this;
        }

        public Builder sequence(long value, long epoch) {
            this.hasSequence = true;
            this.sequence = value;
            this.sequenceEpoch = epoch;
            return this;
        }

        /** Taken as is: pass an unmodifiable list. */
        public Builder userProperties(List<Map.Entry<String, String>> value) {
            this.userProperties = value;
            return this;
        }

        public Builder receivedAtMillis(long value) {
            this.receivedAtMillis = value;
            return this;
        }

        public Builder mqttTopic(String value) {
            this.mqttTopic = value;
            return this;
        }

        public DeviceMessageView build() {
            return new DeviceMessageView(this);
        }
    }
}
