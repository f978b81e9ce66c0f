package io.devicegateway.function.telematics;

import java.util.List;
import java.util.Set;

import jakarta.inject.Singleton;

import io.devicegateway.function.DeviceFunction;
import io.devicegateway.function.DeviceMessageView;
import io.devicegateway.function.Outcome;

/**
 * The shipped example device function: decodes a {@link TelematicsFrame} into JSON, sets {@code content_type}
 * {@code application/json} and the envelope's {@code sequence} (the frame's counter, so duplicate removal applies;
 * an epoch the device sent as {@code seq-epoch} is kept). A payload that is not a frame is dead-lettered with the
 * reason saying why ({@code telematics-wrong-length}, {@code -bad-magic}, {@code -unsupported-version},
 * {@code -out-of-range}).
 */
@Singleton
public class TelematicsDecoder implements DeviceFunction {

    public static final String NAME = "telematics-decoder";
    public static final String CONTENT_TYPE = "application/json";

    private final TelematicsDecoderConfig config;

    TelematicsDecoder(TelematicsDecoderConfig config) {
        this.config = config;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Set<Kind> kinds() {
        return Set.of(Kind.TELEMETRY);
    }

    @Override
    public List<String> streams() {
        return config.streams();
    }

    @Override
    public int order() {
        return config.order();
    }

    @Override
    public boolean enabled() {
        return config.enabled();
    }

    @Override
    public Outcome apply(DeviceMessageView message) {
        TelematicsFrame frame;
        try {
            frame = TelematicsFrame.decode(message.payload());
        } catch (TelematicsFrame.Malformed e) {
            return Outcome.deadLetter(e.reason());
        }
        return Outcome.replace().payload(frame.toJsonBytes()).contentType(CONTENT_TYPE).sequence(frame.sequence());
    }
}
