package io.devicegateway.ingest;

import java.nio.charset.StandardCharsets;

import org.apache.kafka.common.header.internals.RecordHeaders;

import io.devicegateway.contract.Envelopes;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.v1.DeviceMessage;

/** What an MQTT 5 device's message properties become in Kafka (README: MQTT 5 mapping). */
final class Mqtt5Properties {

    private Mqtt5Properties() {
    }

    static void apply(InboundMessage message, DeviceMessage.Builder envelope, RecordHeaders headers) {
        String contentType = message.contentType();
        if (contentType != null && !contentType.isEmpty()) {
            envelope.setContentType(contentType);
            headers.add(Envelopes.HEADER_CONTENT_TYPE, contentType.getBytes(StandardCharsets.UTF_8));
        }
        if (message.payloadUtf8()) {
            envelope.setPayloadUtf8(true);
            headers.add(Envelopes.HEADER_PAYLOAD_FORMAT, UTF8);
        }
        message.forEachUserProperty((name, value) -> headers.add(Envelopes.USER_PROPERTY_HEADER_PREFIX + name,
                value.getBytes(StandardCharsets.UTF_8)));
    }

    private static final byte[] UTF8 = "utf-8".getBytes(StandardCharsets.US_ASCII);
}
