package io.devicegateway.contract;

/**
 * Why an inbound message was rejected. The {@link #code()} is written as the {@code reason} header of
 * the dead-letter record and as the {@code reason} tag of the dead-letter metric, so it is contract.
 */
public enum RejectReason {
    /** The topic does not follow {@code devices/{id}/{kind}[/...]}. */
    TOPIC_NOT_IN_GRAMMAR("topic-not-in-grammar"),
    /** The device id level is outside {@code [A-Za-z0-9._:-]{1,128}}. */
    INVALID_DEVICE_ID("invalid-device-id"),
    /** A stream/type level after telemetry/ or events/ is empty or has characters outside the grammar. */
    INVALID_STREAM("invalid-stream"),
    /** Zero-byte payload. */
    EMPTY_PAYLOAD("empty-payload"),
    /** Payload larger than the configured limit. */
    PAYLOAD_TOO_LARGE("payload-too-large"),
    /** A status payload other than {@code online} / {@code offline}. */
    INVALID_STATUS("invalid-status"),
    /** A response topic whose status level is not an integer. */
    INVALID_RESPONSE("invalid-response"),
    /**
     * A response on {@code devices/{id}/responses/{corr}} although no command with that correlation id was sent to
     * {@code {id}} (another device's command, an unknown id, or one older than the response claim TTL).
     */
    RESPONSE_DEVICE_MISMATCH("response-device-mismatch"),
    /** A response payload larger than {@code gateway.commands.max-response-bytes}. */
    RESPONSE_TOO_LARGE("response-too-large"),
    /** Kafka refused the record for good (e.g. larger than the broker's message.max.bytes). */
    KAFKA_REJECTED("kafka-rejected"),
    /** A device function threw (or returned no outcome); headers {@code function} and {@code error} say which and what. */
    FUNCTION_FAILED("function-failed"),
    /**
     * A channel step nacked the message (README: Ingest channels): header {@code error} names the cause's class. The
     * message is acknowledged once this dead letter is in Kafka.
     */
    PROCESSING_FAILED("processing-failed");

    private final String code;

    RejectReason(String code) {
        this.code = code;
    }

    public String code() {
        return code;
    }
}
