// Stands in for ssh2 and gRPC in the bundled Docker client: agentbox talks to the Engine
// over a unix socket or tcp (DOCKER_HOST), never ssh://, and does not use BuildKit
// sessions. Leaving them out takes about 70 ms off every container launch.
function unsupported(what) {
  return function () {
    throw new Error(what + ' is not supported by agentbox (use DOCKER_HOST=unix:// or tcp://)');
  };
}
module.exports = { Client: unsupported('DOCKER_HOST=ssh://'), Server: unsupported('BuildKit sessions'), loadSync: unsupported('BuildKit sessions'), ServerCredentials: {}, loadPackageDefinition: unsupported('BuildKit sessions') };
