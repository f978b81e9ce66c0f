package io.devicegateway.function.telematics;

import java.util.List;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;

/** The example decoder ({@code gateway.functions.telematics-decoder.*}); off unless enabled. */
@ConfigMapping(prefix = "gateway.functions.telematics-decoder")
public interface TelematicsDecoderConfig {

    /** Runs the decoder on telemetry of the configured streams. Off by default (prod); on in the test profile. */
    @WithDefault("false")
    boolean enabled();

    /** Stream filters of the frames (telemetry only). */
    @WithDefault("telematics/position")
    List<String> streams();

    /** Its place among the device functions (lower first). */
    @WithDefault("100")
    int order();
}
