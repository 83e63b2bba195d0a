'use strict';
const { S3Client, GetObjectCommand, PutObjectCommand } = require('@aws-sdk/client-s3');
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const https = require('https');
const insecureAgent = new https.Agent({ rejectUnauthorized: false, keepAlive: true });

const s3 = new S3Client({});
const WORK_DIR = '/tmp/thumbs';

async function download(bucket, key, target) {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = await out.Body.transformToByteArray();
  fs.writeFileSync(target, bytes);
}

function resize(source, target) {
  const result = spawnSync('/opt/bin/convert', [source, '-resize', '256x256', target]);
  if (result.status !== 0) {
    throw new Error(`convert failed: ${result.stderr}`);
  }
}

exports.handler = async (event) => {
  fs.mkdirSync(WORK_DIR, { recursive: true });
  const record = event.Records[0].s3;
  const key = decodeURIComponent(record.object.key.replace(/\+/g, ' '));
  const source = path.join(WORK_DIR, path.basename(key));
  const target = `${source}.thumb.jpg`;
  await download(record.bucket.name, key, source);
  resize(source, target);
  await s3.send(new PutObjectCommand({
    Bucket: process.env.THUMB_BUCKET,
    Key: `thumbs/${key}`,
    Body: fs.readFileSync(target),
  }));
  return { key };
};
