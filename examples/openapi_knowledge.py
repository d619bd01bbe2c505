"""A knowledge base built with the official Bailian management SDK, then used by an app call:
ApplyFileUploadLease → upload → AddFile → DescribeFile (PARSE_SUCCESS) → CreateIndex →
SubmitIndexJob → GetIndexJobStatus (COMPLETED) → Retrieve → Application.call(pipeline_ids).

pip install alibabacloud-bailian20231229 dashscope requests

Environment (from `openbailian keys create --workspace team-a --json`):
  BAILIAN_ENDPOINT                  e.g. 127.0.0.1:8000 (host:port, no scheme)
  ALIBABA_CLOUD_ACCESS_KEY_ID       access_key_id
  ALIBABA_CLOUD_ACCESS_KEY_SECRET   access_key_secret
  BAILIAN_WORKSPACE_ID              the key's workspace
  BAILIAN_APP_ID                    an app of that workspace
  DASHSCOPE_API_KEY                 api_key (sk-…), for the app call
  DASHSCOPE_HTTP_BASE_URL           e.g. http://127.0.0.1:8000/api/v1/
  KNOWLEDGE_FILE                    optional: the document to index (a small guide by default)
"""

import hashlib
import os
import sys
import time
from http import HTTPStatus
from pathlib import Path

import requests
from alibabacloud_bailian20231229 import models
from alibabacloud_bailian20231229.client import Client
from alibabacloud_tea_openapi.utils_models import Config
from dashscope import Application

GUIDE = (
    "# Lighthouse keeping\n\n"
    "The Wrenfield lighthouse lamp is wound every evening at dusk by the keeper on duty.\n\n"
    "## Supplies\n\nParaffin for the Wrenfield lamp is delivered by boat every second Tuesday.\n"
)

endpoint = os.environ["BAILIAN_ENDPOINT"]
client = Client(
    Config(
        access_key_id=os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        access_key_secret=os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        endpoint=endpoint,
        protocol="http" if endpoint.startswith(("127.", "localhost")) else "https",
    )
)
workspace_id = os.environ["BAILIAN_WORKSPACE_ID"]
path = Path(os.environ["KNOWLEDGE_FILE"]) if os.getenv("KNOWLEDGE_FILE") else None
name, data = (path.name, path.read_bytes()) if path else ("lighthouse.md", GUIDE.encode())


def wait(what, check, seconds=300):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while (result := check()) is None:
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not finish in {seconds} s")
        time.sleep(1)
    return result


# 1. Upload the document to the data center (category "default", CategoryType UNSTRUCTURED).
lease = client.apply_file_upload_lease(
    "default",
    workspace_id,
    models.ApplyFileUploadLeaseRequest(file_name=name, md_5=hashlib.md5(data).hexdigest(), size_in_bytes=str(len(data))),
).body.data
upload = requests.request(lease.param.method, lease.param.url, data=data, headers=lease.param.headers, timeout=600)
upload.raise_for_status()
file_id = client.add_file(
    workspace_id,
    models.AddFileRequest(lease_id=lease.file_upload_lease_id, parser="DASHSCOPE_DOCMIND", category_id="default"),
).body.data.file_id
print(f"file_id={file_id}")


def parsed():  # type: ignore[no-untyped-def]
    file = client.describe_file(workspace_id, file_id, models.DescribeFileRequest()).body.data
    return file if file.status in ("PARSE_SUCCESS", "PARSE_FAILED") else None


file = wait("parsing", parsed)
if file.status != "PARSE_SUCCESS":
    sys.exit(f"parsing failed: {file.parse_error_message}")
print(f"parsed at {file.create_time}; parse result: {file.parse_result_download_url}")

# 2. A knowledge base from that document, built by an index job.
index_id = client.create_index(
    workspace_id,
    models.CreateIndexRequest(
        name="lighthouse", structure_type="unstructured", sink_type="BUILT_IN",
        source_type="DATA_CENTER_FILE", document_ids=[file_id], chunk_size=500, overlap_size=100,
    ),
).body.data.id
job_id = client.submit_index_job(workspace_id, models.SubmitIndexJobRequest(index_id=index_id)).body.data.id
print(f"index_id={index_id} job_id={job_id}")


def finished():  # type: ignore[no-untyped-def]
    job = client.get_index_job_status(
        workspace_id, models.GetIndexJobStatusRequest(index_id=index_id, job_id=job_id)
    ).body.data
    return job if job.status in ("COMPLETED", "FAILED") else None


job = wait("the index job", finished)
for document in job.documents:
    print(f"document {document.doc_id} {document.doc_name}: {document.status} {document.message or ''}")
if job.status != "COMPLETED":
    sys.exit("the index job failed")

# 3. What the knowledge base finds, then an app call that searches it.
question = os.getenv("QUESTION", "When is the Wrenfield lamp wound?")
nodes = client.retrieve(workspace_id, models.RetrieveRequest(index_id=index_id, query=question)).body.data.nodes
for node in nodes[:3]:
    print(f"retrieved ({node.score:.3f}) {node.metadata['doc_name']}: {node.text[:80]!r}")

response = Application.call(
    api_key=os.getenv("DASHSCOPE_API_KEY"),
    app_id=os.environ["BAILIAN_APP_ID"],
    prompt=question,
    rag_options={"pipeline_ids": [index_id], "file_ids": [file_id]},
)
if response.status_code != HTTPStatus.OK:
    print(f"request_id={response.request_id} code={response.status_code} message={response.message}")
else:
    print(response.output.text)
