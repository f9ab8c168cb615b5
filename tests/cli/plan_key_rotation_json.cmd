plan runbooks/key-rotation.yaml -p vercel_org_id=team_1 -p vercel_project_id=prj_1 -p production_url=https://veris.example -p app_url=https://app.veris.example --format json
