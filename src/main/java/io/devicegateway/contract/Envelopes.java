package io.devicegateway.contract;


import io.devicegateway.v1.DeviceMessage;
import io.devicegateway.v1.MessageKind;

/** Builds the {@link DeviceMessage} envelope every Kafka record of the gateway carries. */
public final class Envelopes {

    /** Kafka header names, for routing without decoding the value. */
    public static final String HEADER_DEVICE_ID = "device-id";
    public static final String HEADER_MQTT_TOPIC = "mqtt-topic";
    public static final String HEADER_KIND = "kind";
    public static final String HEADER_REASON = "reason";
    public static final String HEADER_PAYLOAD_SIZE = "payload-size";
    /** MQTT 5 Content Type of the device's message (also in the envelope's content_type). */
    public static final String HEADER_CONTENT_TYPE = "content-type";
    /** {@code utf-8} when the device set the MQTT 5 Payload Format Indicator (also the envelope's payload_utf8). */
    public static final String HEADER_PAYLOAD_FORMAT = "payload-format";
    /**
     * A device's MQTT 5 user property {@code NAME} becomes the header {@code mqtt-user-NAME} (value UTF-8, order and
     * repeats kept). The prefix keeps them apart from every header the gateway sets itself.
     */
    public static final String USER_PROPERTY_HEADER_PREFIX = "mqtt-user-";
    /** The device's sequence number (unsigned decimal) when it numbers its messages (also the envelope's sequence). */
    public static final String HEADER_SEQUENCE = "sequence";
    /** Its sequence epoch (unsigned decimal), when given (also the envelope's sequence_epoch). */
    public static final String HEADER_SEQUENCE_EPOCH = "sequence-epoch";
    /** Set when a numbered message was written without the duplicate check: {@code unchecked}, {@code beyond-window}. */
    public static final String HEADER_DEDUP = "dedup";
    /** On a dead letter a device function caused: the function's name. */
    public static final String HEADER_FUNCTION = "function";
    /** On a {@code function-failed} or {@code processing-failed} dead letter: the exception's class name. */
    public static final String HEADER_ERROR = "error";

    private Envelopes() {
    }

    public static MessageKind kindOf(TopicKind kind) {
        return switch (kind) {
            case TELEMETRY -> MessageKind.TELEMETRY;
            case EVENTS -> MessageKind.EVENT;
            default -> MessageKind.MESSAGE_KIND_UNSPECIFIED;
        };
    }

    public static DeviceMessage.Builder envelope(String deviceId, MessageKind kind, String stream, String mqttTopic,
            long receivedAtMs, String gatewayInstance, int qos, boolean redelivered) {
        return DeviceMessage.newBuilder()
                .setDeviceId(deviceId == null ? "" : deviceId)
                .setKind(kind)
                .setStream(stream == null ? "" : stream)
                .setMqttTopic(mqttTopic)
                .setReceivedAtMs(receivedAtMs)
                .setGatewayInstance(gatewayInstance)
                .setQos(qos)
                .setRedelivered(redelivered);
    }

}
