'use strict'
// Throwaway TLS material for tests, made with the openssl command line in a
// temp dir: a CA, a server certificate it signs (for 127.0.0.1/localhost), a
// client certificate it signs (mutual TLS), a second CA that signed nothing
// (the "wrong CA"), and a self-signed server certificate.

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

function selfSignedCa(dir, name) {
  openssl(dir, [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=ferrolock test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ])
}

/** A leaf certificate for `name`, signed by the CA `ca`, valid for 127.0.0.1 and localhost. */
function signedLeaf(dir, name, ca, extendedUsage) {
  const ext = path.join(dir, `${name}.ext`)
  fs.writeFileSync(
    ext,
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage=${extendedUsage}`,
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ].join('\n'),
  )
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`])
  openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-out', `${name}.crt`, '-days', '2', '-sha256', '-extfile', ext,
  ])
}

/**
 * Generates the certificates; resolves file paths and PEM texts:
 * `{ dir, files: { ca, server, serverKey, client, clientKey, otherCa, selfSigned, selfSignedKey },
 *    pem: { ...same names }, remove() }`.
 */
function makeCerts() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrolock-certs-'))
  selfSignedCa(dir, 'ca')
  selfSignedCa(dir, 'other-ca')
  signedLeaf(dir, 'server', 'ca', 'serverAuth')
  signedLeaf(dir, 'client', 'ca', 'clientAuth')
  openssl(dir, [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-keyout', 'self-signed.key', '-out', 'self-signed.crt', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ])
  const names = {
    ca: 'ca.crt',
    server: 'server.crt',
    serverKey: 'server.key',
    client: 'client.crt',
    clientKey: 'client.key',
    otherCa: 'other-ca.crt',
    selfSigned: 'self-signed.crt',
    selfSignedKey: 'self-signed.key',
  }
  const files = {}
  const pem = {}
  for (const [name, file] of Object.entries(names)) {
    files[name] = path.join(dir, file)
    pem[name] = fs.readFileSync(files[name], 'utf8')
  }
  return { dir, files, pem, remove: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

module.exports = { makeCerts }
