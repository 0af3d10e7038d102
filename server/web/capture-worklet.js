// AudioWorklet processor: hands the microphone's samples (mono, float, at the AudioContext's rate)
// to the page in batches of about 40 ms. The page downsamples them to 16 kHz int16.
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.batch = new Float32Array(2048);
    this.filled = 0;
    // "flush": the page is stopping; send what is left of the batch
    this.port.onmessage = () => {
      this.port.postMessage({ flushed: this.batch.slice(0, this.filled) });
      this.filled = 0;
    };
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];  // the node downmixes to one channel
    if (channel) {
      let offset = 0;
      while (offset < channel.length) {
        const n = Math.min(channel.length - offset, this.batch.length - this.filled);
        this.batch.set(channel.subarray(offset, offset + n), this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === this.batch.length) {
          this.port.postMessage(this.batch, [this.batch.buffer]);
          this.batch = new Float32Array(2048);
          this.filled = 0;
        }
      }
    }
    return true;  // keep running until the page disconnects the node
  }
}

registerProcessor("pcm-capture", PcmCapture);
